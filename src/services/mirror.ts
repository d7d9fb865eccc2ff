import {
  decideGeneration,
  generationStale,
  type LiveTopicIds,
  type OffsetGap,
  type PartitionHead,
  withGap,
} from '../core/generation.ts';
import { type MirrorLimits, planMirror } from '../core/mirrorPlan.ts';
import { buildRuns, entryFromRuns, type OffsetMapEntry } from '../core/offsetMap.ts';
import { lastHeader, parseSrc, SRC_HEADER } from '../core/provenance.ts';
import { partitionKey, recordSize, type SourceRecord, type TopicPartition } from '../core/records.ts';
import { IncompleteBatchError, KafkaError, ProducerFencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type {
  PartitionOffsets,
  PartitionReader,
  TransactionalWriter,
  TransactionalWriterFactory,
} from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import { verifiedCopies } from './provenance.ts';

/**
 * Exactly-once mirroring of source partitions to the standby. Per partition, one writer at a time:
 *
 *   1. open the partition's transactional writer: this fences every older writer of the partition;
 *   2. recover what the standby has: the topic's generation (its ids on both sides, core/generation.ts),
 *      the offset map's latest entry of that generation, then the standby's committed tail after it (a
 *      crash between a commit and its map entry leaves such a tail; the entry is repaired);
 *   3. fill a gap before the batch (records the delivery skipped) by reading it from the source; what the
 *      source deleted before it was read is recorded as a gap, never waited for;
 *   4. skip records at or below the last mirrored offset (redelivered or overlapping batches), and proven
 *      copies of the target's own records (services/provenance.ts);
 *   5. produce the rest in a transaction, commit, then write the offset-map entry.
 *
 * Any failure drops the partition's writer and what was known; the next batch starts again at 1. Because
 * recovery always follows the fence, a writer that lost the race can no longer commit, and a writer that
 * won reads everything committed before it: no duplicate and no loss, whatever crashed when.
 */

export interface MirrorEngineOptions {
  sourceAlias: string;
  targetAlias: string;
  writers: TransactionalWriterFactory;
  /** Reads the standby (read_committed) to recover its tail. */
  targetReader: PartitionReader;
  offsetMap: OffsetMapStore;
  limits: MirrorLimits;
  logger: Logger;
  /** Checked before every transaction: throws when the pair must not be written (e.g. failing over). */
  guard?: (source: TopicPartition) => Promise<void>;
  /**
   * Called once per topic before its first write: creates the standby topic when missing and returns its
   * max.message.bytes, which bounds a produce request (Kafka limits a whole record batch by it).
   */
  ensureTopic?: (topic: string) => Promise<number | undefined>;
  /** When the offset map has nothing yet: the lowest target offset this direction's records can be at. */
  recoveryFloor?: (source: TopicPartition) => Promise<number | undefined>;
  /** Maps a source partition to its standby partition (identity by default). */
  target?: (source: TopicPartition) => TopicPartition;
  /** The topic ids (KIP-516) of a source topic and of its standby topic now; without it, generations stay 1. */
  topicIds?: (source: TopicPartition, target: TopicPartition) => Promise<LiveTopicIds>;
  /** Reads the source, to fill a gap before a batch; without it, batches are taken as delivered. */
  sourceReader?: PartitionReader;
  /** The other direction's offset map (target -> source), which proves a record a copy of the target's. */
  counterpartMap?: OffsetMapStore;
  /** Most bytes of a gap read and mirrored in one batch; the rest when the batch comes again. */
  fillMaxBytes?: number;
  clock?: () => number;
}

export interface BatchResult {
  source: TopicPartition;
  mirrored: number;
  alreadyMirrored: number;
  /** Records proven to be copies of the target's records (never copied back). */
  originIsTarget: number;
  transactions: number;
  /** Last source offset the standby has after this batch (null: nothing yet). */
  lastMirrored: number | null;
  /** Highest offset of the batch, mirrored or not. */
  lastOffset: number | null;
  /** The topic generation the batch was mirrored in. */
  generation: number;
  /** Records read from the source to fill a gap before the batch (already counted in `mirrored`). */
  filled: number;
  /** Source offsets before the batch deleted before they were read. */
  gap?: OffsetGap;
  recovered?: RecoveryResult;
}

export interface RecoveryResult {
  lastMirrored: number | null;
  /** Records found on the standby after the last map entry (a commit whose entry was never written). */
  repaired: number;
  generation: number;
  /** Set when this recovery began a new generation (a topic re-created on either side). */
  generationChanged?: { from: number; to: number; reason: string };
  /** The partition's head after recovery; `headUnsaved`: it goes with the next entry written. */
  head: PartitionHead;
  headUnsaved: boolean;
}

interface PartitionState {
  writer?: TransactionalWriter;
  lastMirrored: number | null;
  head?: PartitionHead;
  /** The head changed in a way that may wait for the next entry (written with it, in one request). */
  headUnsaved: boolean;
  /** The first source offset the next batch should start at, when known (gaps before it are filled). */
  expectedNext: number | null;
  /** Serialises work on one partition: batches of a partition must apply in order. */
  queue: Promise<unknown>;
}

const FILL_MAX_BYTES = 32 * 1024 * 1024;
/** Runs per offset-map entry written by a repair (a few bytes each: far below DynamoDB's 400 KB). */
export const MAX_RUNS_PER_ENTRY = 5_000;

export class MirrorEngine {
  private readonly partitions = new Map<string, PartitionState>();
  private readonly ensuredTopics = new Map<string, Promise<number | undefined>>();
  private readonly clock: () => number;
  private readonly target: (source: TopicPartition) => TopicPartition;
  private closed = false;

  constructor(private readonly options: MirrorEngineOptions) {
    this.clock = options.clock ?? Date.now;
    this.target = options.target ?? ((source) => source);
  }

  /**
   * Mirrors one batch of committed source records of one partition; resolves once they are durable.
   * `checkContinuity`: the batch may not follow the previous one (a Lambda event): a gap before it is
   * read from the source. A process's first batch of a partition is always checked.
   */
  mirrorBatch(
    source: TopicPartition,
    records: readonly SourceRecord[],
    options: { checkContinuity?: boolean } = {},
  ): Promise<BatchResult> {
    const key = partitionKey(source);
    let state = this.partitions.get(key);
    if (!state) {
      state = { lastMirrored: null, expectedNext: null, headUnsaved: false, queue: Promise.resolve() };
      this.partitions.set(key, state);
    }
    const run = state.queue.then(() => this.mirrorSerial(source, records, state!, options));
    state.queue = run.catch(() => {});
    return run;
  }

  /** The standby partition a source partition is mirrored to. */
  targetOf(source: TopicPartition): TopicPartition {
    return this.target(source);
  }

  /** What the standby has of a partition (recovering it if this process has not yet). */
  lastMirrored(source: TopicPartition): number | null | undefined {
    return this.partitions.get(partitionKey(source))?.lastMirrored;
  }

  private async mirrorSerial(
    source: TopicPartition,
    records: readonly SourceRecord[],
    state: PartitionState,
    options: { checkContinuity?: boolean },
  ) {
    if (this.closed) throw new KafkaError('KAFKA_REQUEST_FAILED', 'the mirror is closing');
    const log = this.options.logger.child({ topic: source.topic, partition: source.partition });
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt(source, records, state, options);
      } catch (error) {
        // What was mirrored of a long gap stays mirrored: the writer and what is known are still right.
        if (error instanceof IncompleteBatchError) throw error;
        await this.reset(state);
        // A fence means another writer took the partition. Taking it back once (which recovers what that
        // writer committed) keeps two Lambda containers from failing each other's batches forever.
        if (error instanceof ProducerFencedError && attempt === 1) {
          log.warn('fenced by another writer; taking the partition back', { error: error.message });
          continue;
        }
        throw error;
      }
    }
  }

  private async attempt(
    source: TopicPartition,
    records: readonly SourceRecord[],
    state: PartitionState,
    options: { checkContinuity?: boolean },
  ): Promise<BatchResult> {
    let recovered: RecoveryResult | undefined;
    const maxMessageBytes = await this.ensureTopic(source.topic);
    await this.dropIfTopicChanged(source, records, state);
    let checkContinuity = options.checkContinuity === true;
    if (!state.writer) {
      state.writer = await this.options.writers.open(source);
      recovered = await this.recover(source);
      state.lastMirrored = recovered.lastMirrored;
      state.head = recovered.head;
      state.headUnsaved = recovered.headUnsaved;
      state.expectedNext =
        recovered.lastMirrored !== null ? recovered.lastMirrored + 1 : recovered.generation > 1 ? 0 : null;
      checkContinuity = true;
    }
    // Room for the record batch header around the records.
    const maxRequestBytes = Math.min(
      this.options.limits.maxRequestBytes,
      (maxMessageBytes ?? Infinity) - 512,
    );
    const fill = checkContinuity
      ? await this.fillGap(source, records, state, maxRequestBytes)
      : { filled: 0, complete: true };
    const result = await this.mirrorRecords(source, records, state, maxRequestBytes);
    if (!fill.complete) {
      throw new IncompleteBatchError(
        `${source.topic}-${source.partition}: mirrored ${fill.filled} records of the gap before offset ${result.firstOffset} (at most ${this.fillMaxBytes()} bytes per batch); the batch is delivered again to continue`,
        { details: { ...source, filled: fill.filled, lastMirrored: state.lastMirrored } },
      );
    }
    if (result.lastOffset !== null)
      state.expectedNext = Math.max(state.expectedNext ?? 0, result.lastOffset + 1);
    return {
      source,
      mirrored: result.mirrored + fill.filled,
      alreadyMirrored: result.alreadyMirrored,
      originIsTarget: result.originIsTarget,
      transactions: result.transactions,
      lastMirrored: state.lastMirrored,
      lastOffset: result.lastOffset,
      generation: state.head?.generation ?? 1,
      filled: fill.filled,
      ...(fill.gap ? { gap: fill.gap } : {}),
      ...(recovered ? { recovered } : {}),
    };
  }

  /** Plans and writes records that follow what the standby has, transaction by transaction. */
  private async mirrorRecords(
    source: TopicPartition,
    records: readonly SourceRecord[],
    state: PartitionState,
    maxRequestBytes: number,
  ) {
    const target = this.target(source);
    const plan = planMirror({
      source,
      records,
      lastMirrored: state.lastMirrored,
      sourceAlias: this.options.sourceAlias,
      targetAlias: this.options.targetAlias,
      limits: { ...this.options.limits, maxRequestBytes },
      copiesFromTarget: await verifiedCopies(
        this.options.counterpartMap,
        target,
        this.options.targetAlias,
        records,
      ),
    });
    let mirrored = 0;
    for (const transaction of plan.transactions) {
      await this.options.guard?.(source);
      // A request over the limit is one record the source took compressed: it goes compressed too.
      const standbyOffsets = await state.writer!.write(target, transaction.requests, {
        compressAbove: maxRequestBytes,
      });
      const sent = transaction.requests.flat();
      const entry = entryFromRuns(
        source,
        buildRuns(sent.map((r, i) => [r.sourceOffset, standbyOffsets[i]!] as const)),
        sent.at(-1)!.timestamp,
        this.clock(),
      );
      await this.options.offsetMap.put(
        entry,
        state.head?.generation ?? 1,
        state.headUnsaved ? state.head : undefined,
      );
      state.headUnsaved = false;
      state.lastMirrored = transaction.lastSource;
      mirrored += transaction.records;
    }
    let firstOffset: number | null = null;
    for (const r of records) firstOffset = firstOffset === null ? r.offset : Math.min(firstOffset, r.offset);
    return {
      mirrored,
      alreadyMirrored: plan.alreadyMirrored,
      originIsTarget: plan.originIsTarget,
      transactions: plan.transactions.length,
      lastOffset: plan.lastOffset,
      firstOffset,
    };
  }

  private fillMaxBytes(): number {
    return this.options.fillMaxBytes ?? FILL_MAX_BYTES;
  }

  /**
   * Reads and mirrors what lies between what the standby has and the batch's first record: a delivery
   * that skipped records (an event source reset or moved past a failed batch, a new topic generation) must
   * not skip them on the standby. What the source deleted before anyone read it is recorded as a gap.
   */
  private async fillGap(
    source: TopicPartition,
    records: readonly SourceRecord[],
    state: PartitionState,
    maxRequestBytes: number,
  ): Promise<{ filled: number; complete: boolean; gap?: OffsetGap }> {
    const reader = this.options.sourceReader;
    const expected = state.expectedNext;
    let first = Number.POSITIVE_INFINITY;
    for (const r of records) first = Math.min(first, r.offset);
    if (!reader || expected === null || records.length === 0 || first <= expected)
      return { filled: 0, complete: true };
    const [offsets] = await reader.offsets(source.topic, [source.partition]);
    const logStart = offsets?.logStart ?? expected;
    const gap =
      logStart > expected
        ? await this.recordGap(source, state, expected, Math.min(logStart, first))
        : undefined;
    let filled = 0;
    let bytes = 0;
    let pending: SourceRecord[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      await this.mirrorRecords(source, pending, state, maxRequestBytes);
      filled += pending.length;
      pending = [];
    };
    for await (const batch of reader.readRange(source, Math.max(expected, logStart), first)) {
      for (const record of batch) {
        pending.push(record);
        bytes += recordSize(record);
      }
      if (pending.length >= this.options.limits.maxTransactionRecords) await flush();
      if (bytes > this.fillMaxBytes()) {
        await flush();
        return { filled, complete: false, ...(gap ? { gap } : {}) };
      }
    }
    await flush();
    if (filled > 0)
      this.options.logger.info('filled a gap before the batch from the source', {
        topic: source.topic,
        partition: source.partition,
        from: expected,
        to: first,
        records: filled,
      });
    return { filled, complete: true, ...(gap ? { gap } : {}) };
  }

  private async recordGap(
    source: TopicPartition,
    state: PartitionState,
    from: number,
    to: number,
  ): Promise<OffsetGap> {
    const gap: OffsetGap = { from, to, count: to - from, seenAt: this.clock(), side: 'source' };
    this.options.logger.warn('source records were deleted before they were mirrored: recorded as a gap', {
      topic: source.topic,
      partition: source.partition,
      ...gap,
    });
    if (state.head) {
      state.head = withGap(state.head, gap);
      await this.options.offsetMap.putHead(source, state.head);
      state.headUnsaved = false;
    }
    return gap;
  }

  /**
   * A batch at or below what is mirrored is a redelivery, or the first of a re-created topic: the topic
   * ids tell which. A changed id drops the writer, so the next step fences and begins a new generation.
   */
  private async dropIfTopicChanged(
    source: TopicPartition,
    records: readonly SourceRecord[],
    state: PartitionState,
  ): Promise<void> {
    const { topicIds } = this.options;
    if (!state.writer || !state.head || !topicIds || state.lastMirrored === null) return;
    if (!records.some((r) => r.offset <= state.lastMirrored!)) return;
    const live = await topicIds(source, this.target(source));
    if (!generationStale(state.head, live)) return;
    this.options.logger.warn('topic ids changed under a running writer; starting over', {
      topic: source.topic,
      partition: source.partition,
      known: { source: state.head.sourceTopicId, standby: state.head.standbyTopicId },
      live,
    });
    await this.reset(state);
  }

  /**
   * What the standby has of a source partition. Runs right after the writer was opened (the fence), so no
   * other writer can commit while the tail is read.
   */
  async recover(source: TopicPartition): Promise<RecoveryResult> {
    const target = this.target(source);
    const { offsetMap, targetReader } = this.options;
    const [head, live, [offsets]] = await Promise.all([
      offsetMap.head(source),
      this.options.topicIds?.(source, target) ?? Promise.resolve({ source: null, standby: null }),
      targetReader.offsets(target.topic, [target.partition]),
    ]);
    if (!offsets)
      throw new KafkaError('KAFKA_REQUEST_FAILED', `no offsets for ${target.topic}-${target.partition}`);
    const known = await offsetMap.latest({ ...source, generation: head?.generation ?? 1 });
    const decision = decideGeneration({ head, live, latest: known, standby: offsets, now: this.clock() });
    // A new generation's floor must be durable before its first commit (recovery starts there); learned
    // ids can wait for the next entry, written together with it.
    if (decision.kind === 'new') await offsetMap.putHead(source, decision.head);
    const generation = decision.head.generation;
    const changed =
      decision.kind === 'new' ? { from: generation - 1, to: generation, reason: decision.reason } : undefined;
    if (changed)
      this.options.logger.warn(
        'topic generation changed: mirroring the new topic after what the standby has',
        {
          topic: source.topic,
          partition: source.partition,
          ...changed,
          standbyFloor: decision.head.standbyFloor,
        },
      );
    const entry = decision.kind === 'new' ? undefined : known;
    this.refuseIfStandbyLost(source, entry, offsets);
    const floor = entry
      ? undefined
      : decision.head.standbyFloor > 0
        ? decision.head.standbyFloor
        : await this.options.recoveryFloor?.(source);
    // Clamped to the standby's log start: what retention deleted there cannot be read (an idle topic's
    // whole log expires), and nothing unmapped can have survived below it.
    const from = Math.max(offsets.logStart, entry ? entry.lastStandby + 1 : (floor ?? 0));
    const headUnsaved = decision.kind === 'same' && decision.write;
    const repaired = await this.repairTail(
      source,
      decision.head,
      headUnsaved,
      entry,
      from,
      offsets.lastStable,
    );
    return {
      lastMirrored: repaired?.lastSource ?? entry?.lastSource ?? null,
      repaired: repaired?.repaired ?? 0,
      generation,
      ...(changed ? { generationChanged: changed } : {}),
      head: decision.head,
      headUnsaved: headUnsaved && !repaired,
    };
  }

  private refuseIfStandbyLost(
    source: TopicPartition,
    entry: OffsetMapEntry | undefined,
    offsets: PartitionOffsets,
  ): void {
    if (!entry || entry.lastStandby < offsets.lastStable) return;
    throw new KafkaError(
      'KAFKA_REQUEST_FAILED',
      `the offset map says ${source.topic}-${source.partition} offset ${entry.lastSource} is on the standby at ${entry.lastStandby}, ` +
        `but the standby partition ends at ${offsets.lastStable}: standby data was lost or the topic was recreated; ` +
        "refusing to mirror (delete the partition's offset-map entries to mirror it again from scratch)",
      {
        details: {
          topic: source.topic,
          partition: source.partition,
          lastStandby: entry.lastStandby,
          standbyEnd: offsets.lastStable,
        },
      },
    );
  }

  /** Finds this direction's committed records after the last entry (a commit whose entry was lost). */
  private async repairTail(
    source: TopicPartition,
    head: PartitionHead,
    headUnsaved: boolean,
    entry: OffsetMapEntry | undefined,
    from: number,
    to: number,
  ): Promise<{ lastSource: number; repaired: number } | undefined> {
    const target = this.target(source);
    const pairs: [number, number][] = [];
    const timestamps = new Map<number, number>();
    for await (const records of this.options.targetReader.readRange(target, from, to)) {
      for (const record of records) {
        const src = parseSrc(lastHeader(record.headers, SRC_HEADER));
        if (
          !src ||
          src.cluster !== this.options.sourceAlias ||
          src.topic !== source.topic ||
          src.partition !== source.partition
        )
          continue;
        const previous = pairs.at(-1)?.[0] ?? entry?.lastSource ?? -1;
        // An application that forwarded the header of a record it consumed, or a second copy: either way
        // not this direction's next record.
        if (src.offset <= previous) continue;
        pairs.push([src.offset, record.offset]);
        timestamps.set(src.offset, record.timestamp);
      }
    }
    if (pairs.length === 0) return undefined;
    // One entry per chunk of runs: a whole partition's tail on a compacted topic can hold more runs than a
    // DynamoDB item (400 KB) takes. Entries are written in order, so a crash leaves a prefix, repaired again.
    const runs = buildRuns(pairs);
    let repair: OffsetMapEntry | undefined;
    for (let i = 0; i < runs.length; i += MAX_RUNS_PER_ENTRY) {
      const chunk = runs.slice(i, i + MAX_RUNS_PER_ENTRY);
      const end = chunk.at(-1)!;
      const timestamp = timestamps.get(end.sourceStart + end.count - 1) ?? 0;
      repair = entryFromRuns(source, chunk, timestamp, this.clock());
      await this.options.offsetMap.put(repair, head.generation, headUnsaved && i === 0 ? head : undefined);
    }
    this.options.logger.info('repaired the offset map from the standby tail', {
      topic: source.topic,
      partition: source.partition,
      records: pairs.length,
      lastSource: repair!.lastSource,
    });
    return { lastSource: repair!.lastSource, repaired: pairs.length };
  }

  private ensureTopic(topic: string): Promise<number | undefined> {
    if (!this.options.ensureTopic) return Promise.resolve(undefined);
    let ensured = this.ensuredTopics.get(topic);
    if (!ensured) {
      ensured = this.options.ensureTopic(topic).catch((error) => {
        this.ensuredTopics.delete(topic);
        throw error;
      });
      this.ensuredTopics.set(topic, ensured);
    }
    return ensured;
  }

  private async reset(state: PartitionState): Promise<void> {
    const writer = state.writer;
    state.writer = undefined;
    state.lastMirrored = null;
    await writer?.close();
  }

  /** Lets running batches finish, then closes every writer. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.partitions.values()].map((s) => s.queue));
    await Promise.all([...this.partitions.values()].map((s) => this.reset(s)));
    await this.options.writers.close();
  }

  /** Forgets a partition (after a rebalance took it away), closing its writer. */
  async release(source: TopicPartition): Promise<void> {
    const state = this.partitions.get(partitionKey(source));
    if (!state) return;
    this.partitions.delete(partitionKey(source));
    await state.queue;
    await this.reset(state);
  }
}
