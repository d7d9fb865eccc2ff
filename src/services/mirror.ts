import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import {
  decideGeneration,
  generationStale,
  type LiveTopicIds,
  type OffsetGap,
  type PartitionHead,
  withGap,
} from '../core/generation.ts';
import { type MirrorLimits, planMirror } from '../core/mirrorPlan.ts';
import { buildRuns, entryFromRuns, exactTargetOf, type OffsetMapEntry } from '../core/offsetMap.ts';
import { lastHeader, parseSrc, SRC_HEADER } from '../core/provenance.ts';
import {
  groupBy,
  partitionKey,
  recordSize,
  type SourceRecord,
  type TopicPartition,
} from '../core/records.ts';
import { IncompleteBatchError, KafkaError, ProducerFencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type {
  PartitionOffsets,
  PartitionReader,
  TransactionalWriter,
  TransactionalWriterFactory,
} from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import { type LatestKnown, waitVisible } from './lag.ts';
import { verifiedCopies } from './provenance.ts';

/**
 * Exactly-once mirroring of source partitions to the standby. Per partition, one writer at a time:
 *
 *   1. open the partition's transactional writer: this fences every older writer of the partition;
 *   2. recover what the standby has: the topic's generation (its ids on both sides, core/generation.ts)
 *      and the offset map's latest entry of that generation, checked against the standby (entries are
 *      written before their commit, so the latest may describe a transaction that never committed);
 *   3. fill a gap before the batch (records the delivery skipped) by reading it from the source; what the
 *      source deleted before it was read is recorded as a gap, never waited for;
 *   4. skip records at or below the last mirrored offset (redelivered or overlapping batches), and proven
 *      copies of the target's own records (services/provenance.ts);
 *   5. produce the rest in a transaction, write its offset-map entry (fenced by the writer's token), commit.
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
  /** The latest entry whose transaction is on the standby (undefined: nothing mirrored yet). */
  latest?: OffsetMapEntry;
  generation: number;
  /** Set when this recovery began a new generation (a topic re-created on either side). */
  generationChanged?: { from: number; to: number; reason: string };
  /** The partition's head after recovery; `headUnsaved`: it goes with the next entry written. */
  head: PartitionHead;
  headUnsaved: boolean;
}

/** Every promise settled before the first rejection, if any, is thrown: nothing is left running unawaited. */
async function settledAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** A promise and its resolve (Promise.withResolvers, which Node 20 lacks). */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Partitions a fence group opens writers for together (fenceAll). */
const FENCE_GROUP = 16;

/** What fencing a partition found: its latest committed entry in its current generation, or why it failed. */
export type FenceOutcome =
  | { source: TopicPartition; fenced: true; generation: number; latest: OffsetMapEntry | undefined }
  | { source: TopicPartition; fenced: false; error: unknown };

/** A partition's head as read after its writer's fence. */
interface HeadRead {
  head: PartitionHead | undefined;
}

interface PartitionState {
  writer?: TransactionalWriter;
  lastMirrored: number | null;
  /** The entry of the last transaction on the standby, known to this writer (recovered or committed). */
  latest?: OffsetMapEntry;
  /** When `latest` was last learned (recovered or committed): another writer may have fenced this one since. */
  latestAt?: number;
  head?: PartitionHead;
  /** The head changed in a way that may wait for the next entry (written with it, in one request). */
  headUnsaved: boolean;
  /**
   * Set by recovery: what the map had then. Until this writer's first entry claims the partition (the
   * entry's fencing token), a fenced writer's entry may still land; the first entry sweeps such entries.
   */
  sweepAfter?: number | null;
  /** Set by recovery until a batch was found to follow what the standby has (or its gap was filled). */
  continuityUnknown?: boolean;
  /** The first source offset the next batch should start at, when known (gaps before it are filled). */
  expectedNext: number | null;
  /** Serialises work on one partition: batches of a partition must apply in order. */
  queue: Promise<unknown>;
}

const FILL_MAX_BYTES = 32 * 1024 * 1024;
/** About how long a fenced writer waits before it takes its partition back. */
const RETAKE_PAUSE_MS = 200;
/** Most bytes in one standby transaction: what recovery may have to read back to check it. */
const MAX_TRANSACTION_BYTES = 64 * 1024 * 1024;

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
    const state = this.stateOf(source);
    const run = state.queue.then(() => this.mirrorSerial(source, records, state, options));
    state.queue = run.catch(() => {});
    return run;
  }

  private stateOf(source: TopicPartition): PartitionState {
    const key = partitionKey(source);
    let state = this.partitions.get(key);
    if (!state) {
      state = { lastMirrored: null, expectedNext: null, headUnsaved: false, queue: Promise.resolve() };
      this.partitions.set(key, state);
    }
    return state;
  }

  /** The standby partition a source partition is mirrored to. */
  targetOf(source: TopicPartition): TopicPartition {
    return this.target(source);
  }

  /** What the standby has of a partition (recovering it if this process has not yet). */
  lastMirrored(source: TopicPartition): number | null | undefined {
    return this.partitions.get(partitionKey(source))?.lastMirrored;
  }

  /**
   * The latest offset-map entry of a partition as its writer here knows it: recovered after the fence or
   * written by it and committed. `known: false` when this process holds no writer for it (not recovered,
   * failed, or released); another process may have mirrored more then.
   */
  latestKnown(source: TopicPartition): LatestKnown {
    const state = this.partitions.get(partitionKey(source));
    return state?.writer && this.isAssigned(source)
      ? { known: true, entry: state.latest, ...(state.latestAt !== undefined ? { at: state.latestAt } : {}) }
      : { known: false };
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
        // writer committed) keeps two Lambda containers from failing each other's batches forever; after a
        // random pause, so that two writers fencing each other fall out of step and one finishes.
        // Not a partition a rebalance gave to another member: that member is the one fencing it.
        if (error instanceof ProducerFencedError && attempt === 1 && this.isAssigned(source)) {
          log.warn('fenced by another writer; taking the partition back', { error: error.message });
          await sleep(RETAKE_PAUSE_MS * (0.5 + Math.random()));
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
    await this.dropIfTopicChanged(source, state);
    if (!state.writer) recovered = await this.openAndRecover(source, state);
    const checkContinuity = options.checkContinuity === true || state.continuityUnknown;
    // Room for the record batch header around the records.
    const maxRequestBytes = Math.min(
      this.options.limits.maxRequestBytes,
      (maxMessageBytes ?? Infinity) - 512,
    );
    const fill = checkContinuity
      ? await this.fillGap(source, records, state, maxRequestBytes)
      : { filled: 0, complete: true };
    if (!fill.complete) {
      // The next delivery continues the fill, however it comes (a consumer group retries without asking).
      state.continuityUnknown = true;
      // Nothing of the batch itself: its records may only follow the whole gap. Delivered again, the
      // batch continues the fill where this one stopped.
      throw new IncompleteBatchError(
        `${source.topic}-${source.partition}: mirrored ${fill.filled} records of a gap before the batch (at most ${this.fillMaxBytes()} bytes at a time; last mirrored ${state.lastMirrored}); the batch is delivered again to continue`,
        { details: { ...source, filled: fill.filled, lastMirrored: state.lastMirrored } },
      );
    }
    state.continuityUnknown = false;
    const result = await this.mirrorRecords(source, records, state, maxRequestBytes);
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

  /**
   * Opens the partition's writer (the fence), then learns what the standby has. `afterFence` may supply
   * the partition's head, read after the fence (prepare reads many in one request). The state holds the
   * writer only once its recovery ended: what it knows before then is not known.
   */
  private async openAndRecover(
    source: TopicPartition,
    state: PartitionState,
    afterFence?: () => Promise<HeadRead | undefined>,
  ): Promise<RecoveryResult> {
    const writer = await this.options.writers.open(source);
    let recovered: RecoveryResult;
    try {
      recovered = await this.recover(source, await afterFence?.());
    } catch (error) {
      await writer.close();
      throw error;
    }
    state.writer = writer;
    state.lastMirrored = recovered.lastMirrored;
    state.latest = recovered.latest;
    state.latestAt = this.clock();
    state.sweepAfter = recovered.lastMirrored;
    state.head = recovered.head;
    state.headUnsaved = recovered.headUnsaved;
    state.expectedNext =
      recovered.lastMirrored !== null ? recovered.lastMirrored + 1 : recovered.generation > 1 ? 0 : null;
    // Until a batch is known to follow what the standby has, each one is checked for a gap before it.
    state.continuityUnknown = true;
    return recovered;
  }

  /**
   * Opens and recovers the writers of partitions this process was just given, ahead of their first
   * batches: one after the other (behind the consumer's few concurrent batches) they were most of a
   * start-up over hundreds of partitions. `concurrency` partitions at a time, in two groups: each group
   * opens its writers, reads their heads in one request (after the fences), then recovers them. Each runs
   * in its partition's queue, like a batch, so it never overlaps one; a failure is only logged (the
   * partition's first batch tries again).
   */
  async prepare(sources: readonly TopicPartition[], concurrency: number): Promise<void> {
    const size = Math.max(1, Math.ceil(concurrency / 2));
    const groups: TopicPartition[][] = [];
    for (let i = 0; i < sources.length; i += size) groups.push(sources.slice(i, i + size));
    for (const source of sources) this.preparing.add(partitionKey(source));
    const limit = pLimit(2);
    await Promise.all(groups.map((group) => limit(() => this.prepareGroup(group))));
  }

  /** Whether the consumer group told this process its partitions yet (`retain`). */
  get assignmentKnown(): boolean {
    return this.assigned !== undefined;
  }

  /** Whether a prepare is under way or queued for the partition (`--until-caught-up` waits for it). */
  isPreparing(source: TopicPartition): boolean {
    return this.preparing.has(partitionKey(source));
  }

  private readonly preparing = new Set<string>();

  private async prepareGroup(all: readonly TopicPartition[]): Promise<void> {
    // A rebalance since the prepare began may have given some of them to another member.
    const group = all.filter((source) => this.isAssigned(source));
    for (const source of all) if (!group.includes(source)) this.preparing.delete(partitionKey(source));
    if (this.closed || group.length === 0) {
      for (const source of group) this.preparing.delete(partitionKey(source));
      return;
    }
    const fenced = group.map(() => deferred<boolean>());
    const heads = deferred<Map<string, PartitionHead | undefined>>();
    const tasks = group.map((source, i) => {
      const state = this.stateOf(source);
      const run = state.queue.then(async () => {
        try {
          if (this.closed || state.writer || !this.isAssigned(source)) return;
          await this.ensureTopic(source.topic);
          // A rebalance may have come while the topic was ensured (its first time: admin requests).
          if (!this.isAssigned(source)) return;
          await this.openAndRecover(source, state, async () => {
            fenced[i]!.resolve(true);
            const read = await heads.promise;
            return read.has(partitionKey(source)) ? { head: read.get(partitionKey(source)) } : undefined;
          });
        } finally {
          fenced[i]!.resolve(false);
          this.preparing.delete(partitionKey(source));
        }
      });
      state.queue = run.catch(async (error) => {
        await this.reset(state);
        this.options.logger.debug(
          'opening a writer ahead of its first batch failed; its first batch tries again',
          {
            topic: source.topic,
            partition: source.partition,
            error: (error as Error).message,
          },
        );
      });
      return state.queue;
    });
    const flags = await Promise.all(fenced.map((f) => f.promise));
    const read = group.filter((_, i) => flags[i]);
    // Without the batch (no such request, or it failed), each partition reads its own head.
    heads.resolve(await this.headsAfter(read));
    await Promise.all(tasks);
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
      limits: {
        maxTransactionBytes: MAX_TRANSACTION_BYTES,
        ...this.options.limits,
        maxRequestBytes,
      },
      copiesFromTarget: await verifiedCopies(
        this.options.counterpartMap,
        target,
        this.options.targetAlias,
        records,
        state.head?.standbyTopicId ?? null,
      ),
    });
    let mirrored = 0;
    for (const transaction of plan.transactions) {
      await this.options.guard?.(source);
      // The entry is written once every record has its standby offset and before the commit (write-ahead):
      // a crash can leave an entry whose transaction never committed, which recovery checks and removes,
      // but never a committed transaction without its entry, so recovery never scans the standby's tail.
      const sent = transaction.requests.flat();
      let written: OffsetMapEntry | undefined;
      await state.writer!.write(target, transaction.requests, {
        // A request over the limit is one record the source took compressed: it goes compressed too.
        compressAbove: maxRequestBytes,
        beforeCommit: async (standbyOffsets) => {
          const entry = entryFromRuns(
            source,
            buildRuns(sent.map((r, i) => [r.sourceOffset, standbyOffsets[i]!] as const)),
            sent.at(-1)!.timestamp,
            this.clock(),
          );
          await this.options.offsetMap.put(entry, {
            generation: state.head?.generation ?? 1,
            ...(state.headUnsaved && state.head ? { head: state.head } : {}),
            ...(state.writer?.token ? { token: state.writer.token } : {}),
          });
          state.headUnsaved = false;
          await this.sweepZombies(source, state, entry.lastSource);
          written = entry;
        },
      });
      state.lastMirrored = transaction.lastSource;
      state.latest = written;
      state.latestAt = this.clock();
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

  /**
   * Removes entries a fenced writer wrote after this writer's recovery read the map and before this
   * writer's first entry (its token) made such writes fail: they describe transactions the fence aborted.
   */
  private async sweepZombies(source: TopicPartition, state: PartitionState, own: number): Promise<void> {
    if (state.sweepAfter === undefined) return;
    const after = state.sweepAfter;
    state.sweepAfter = undefined;
    const tp = { ...source, generation: state.head?.generation ?? 1 };
    const entries = await this.options.offsetMap.coveringRange(
      tp,
      (after ?? -1) + 1,
      Number.MAX_SAFE_INTEGER,
    );
    for (const e of entries) {
      if (e.lastSource === own) continue;
      this.options.logger.warn(
        'removed an offset-map entry written by a fenced writer (its transaction was aborted)',
        {
          topic: source.topic,
          partition: source.partition,
          lastSource: e.lastSource,
          lastStandby: e.lastStandby,
        },
      );
      await this.options.offsetMap.remove(tp, e.lastSource);
    }
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
    if (gap) state.expectedNext = gap.to;
    let filled = 0;
    let bytes = 0;
    let pending: SourceRecord[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      await this.mirrorRecords(source, pending, state, maxRequestBytes);
      filled += pending.length;
      // A fill cut short continues after what it mirrored.
      state.expectedNext = pending.at(-1)!.offset + 1;
      pending = [];
    };
    for await (const batch of reader.readRange(source, Math.max(expected, logStart), first)) {
      for (const record of batch) {
        pending.push(record);
        bytes += recordSize(record);
        if (pending.length >= this.options.limits.maxTransactionRecords) await flush();
        if (bytes >= this.fillMaxBytes()) {
          await flush();
          return { filled, complete: false, ...(gap ? { gap } : {}) };
        }
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
   * Every batch checks the topic ids on both sides before it is written: a topic re-created under a
   * running writer (a warm Lambda container, a consumer that kept its position) must begin a new
   * generation, whatever offsets its records have. Batches of one topic in flight together share one
   * look-up.
   */
  private async dropIfTopicChanged(source: TopicPartition, state: PartitionState): Promise<void> {
    if (!state.writer || !state.head || !this.options.topicIds) return;
    const live = await this.liveIds(source);
    if (!generationStale(state.head, live)) return;
    this.options.logger.warn('topic ids changed under a running writer; starting over', {
      topic: source.topic,
      partition: source.partition,
      known: { source: state.head.sourceTopicId, standby: state.head.standbyTopicId },
      live,
    });
    await this.reset(state);
  }

  private readonly idLookups = new Map<string, Promise<LiveTopicIds>>();

  private liveIds(source: TopicPartition): Promise<LiveTopicIds> {
    let lookup = this.idLookups.get(source.topic);
    if (!lookup) {
      lookup = this.options.topicIds!(source, this.target(source)).finally(() =>
        this.idLookups.delete(source.topic),
      );
      this.idLookups.set(source.topic, lookup);
    }
    return lookup;
  }

  /**
   * What the standby has of a source partition. Runs right after the writer was opened (the fence), so no
   * other writer can commit while the tail is read.
   */
  async recover(source: TopicPartition, preread?: HeadRead): Promise<RecoveryResult> {
    const target = this.target(source);
    const { offsetMap, targetReader } = this.options;
    const [head, live, [offsets]] = await Promise.all([
      preread ? preread.head : offsetMap.head(source),
      this.options.topicIds ? this.liveIds(source) : Promise.resolve({ source: null, standby: null }),
      targetReader.offsets(target.topic, [target.partition]),
    ]);
    if (!offsets)
      throw new KafkaError('KAFKA_REQUEST_FAILED', `no offsets for ${target.topic}-${target.partition}`);
    const known = await offsetMap.latest({ ...source, generation: head?.generation ?? 1 });
    const decision = decideGeneration({
      head,
      live,
      latest: known,
      standby: offsets,
      now: this.clock(),
      ...(await this.sourceEndIfIdsUnknown(source, head, live, known)),
    });
    // A new generation must be durable before its first entry (the entries' key depends on it); learned
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
    const confirmed =
      decision.kind === 'new' ? undefined : await this.confirmLatest(source, generation, known, offsets);
    return {
      lastMirrored: confirmed?.lastSource ?? null,
      ...(confirmed ? { latest: confirmed } : {}),
      generation,
      ...(changed ? { generationChanged: changed } : {}),
      head: decision.head,
      headUnsaved: decision.kind === 'same' && decision.write,
    };
  }

  /**
   * Fences each partition's mirror (a new writer with its transactional id aborts whatever transaction a
   * running mirror has open) and removes an offset-map entry written ahead of a commit that never
   * happened; each outcome has the latest committed entry in the map's current generation. Reads only
   * the standby and the map: usable when the source is gone. `FENCE_GROUP` partitions at a time per
   * group: a group opens its writers together, then reads their heads in one request (after the fences)
   * and the standby's offsets in one request per topic. One partition after the other, 8 at once, a failover over 1,000 partitions spent
   * 8-10 s of its RTO here. Each partition has its own outcome: one that cannot be fenced (its standby
   * topic deleted meanwhile) never stops the others. `check` runs before each group and each retry, and
   * stops the rest when it throws (a lost lease).
   */
  async fenceAll(
    sources: readonly TopicPartition[],
    options: { concurrency?: number; check?: () => void } = {},
  ): Promise<FenceOutcome[]> {
    const groups: TopicPartition[][] = [];
    for (let i = 0; i < sources.length; i += FENCE_GROUP) groups.push(sources.slice(i, i + FENCE_GROUP));
    const limit = pLimit(Math.max(1, Math.ceil((options.concurrency ?? 64) / FENCE_GROUP)));
    const checked = (partitions: readonly TopicPartition[]) =>
      limit(() => {
        options.check?.();
        return this.fenceGroup(partitions);
      });
    const first = await settledAll(groups.map(checked));
    // A group's writers share connections, so one failed connect fails the whole group: each partition
    // that failed tries once more on its own.
    return settledAll(first.flat().map(async (o) => (o.fenced ? o : (await checked([o.source]))[0]!)));
  }

  private async fenceGroup(group: readonly TopicPartition[]): Promise<FenceOutcome[]> {
    // Through an async function: an open that throws at once fails its partition, as one that rejects.
    const opened = await Promise.allSettled(group.map(async (source) => this.options.writers.open(source)));
    try {
      const fenced = group.filter((_, i) => opened[i]!.status === 'fulfilled');
      const [heads, offsets] = await Promise.all([this.headsAfter(fenced), this.targetOffsets(fenced)]);
      return await Promise.all(
        group.map(async (source, i): Promise<FenceOutcome> => {
          const writer = opened[i]!;
          if (writer.status === 'rejected') return { source, fenced: false, error: writer.reason };
          return this.repairAfterFence(source, heads, offsets).catch((error) => ({
            source,
            fenced: false,
            error,
          }));
        }),
      );
    } finally {
      // Closing only gives the writer's connection back: one that fails to close fenced all the same.
      await Promise.allSettled(opened.map((o) => (o.status === 'fulfilled' ? o.value.close() : undefined)));
    }
  }

  /** After the fence: the partition's generation, and its latest entry once checked against the standby. */
  private async repairAfterFence(
    source: TopicPartition,
    heads: Map<string, PartitionHead | undefined>,
    offsets: Map<string, PartitionOffsets>,
  ): Promise<FenceOutcome> {
    const target = this.target(source);
    const head = heads.has(partitionKey(source))
      ? heads.get(partitionKey(source))
      : await this.options.offsetMap.head(source);
    const generation = head?.generation ?? 1;
    const [known, [standby]] = await Promise.all([
      this.options.offsetMap.latest({ ...source, generation }),
      offsets.has(partitionKey(target))
        ? [offsets.get(partitionKey(target))]
        : this.options.targetReader.offsets(target.topic, [target.partition]),
    ]);
    if (!standby)
      throw new KafkaError('KAFKA_REQUEST_FAILED', `no offsets for ${target.topic}-${target.partition}`);
    const latest = await this.confirmLatest(source, generation, known, standby);
    return { source, fenced: true, generation, latest };
  }

  /** Heads read in one batch after the fences; a partition missing from the map reads its own. */
  private async headsAfter(fenced: TopicPartition[]): Promise<Map<string, PartitionHead | undefined>> {
    const { offsetMap } = this.options;
    if (fenced.length === 0 || !offsetMap.readHeads) return new Map();
    const found = await offsetMap.readHeads(fenced).catch(() => undefined);
    return new Map(found ? fenced.map((tp, i) => [partitionKey(tp), found[i]]) : []);
  }

  /** The standby's offsets of these partitions, one request per topic; a topic that fails is left out. */
  private async targetOffsets(sources: TopicPartition[]): Promise<Map<string, PartitionOffsets>> {
    const byTopic = groupBy(
      sources.map((s) => this.target(s)),
      (t) => t.topic,
    );
    const read = new Map<string, PartitionOffsets>();
    await Promise.all(
      [...byTopic].map(async ([topic, targets]) => {
        const partitions = targets.map((t) => t.partition);
        const offsets = await this.options.targetReader.offsets(topic, partitions).catch(() => []);
        for (const o of offsets) read.set(partitionKey({ topic, partition: o.partition }), o);
      }),
    );
    return read;
  }

  /**
   * The latest entry whose transaction committed. Entries are written before their commit, one
   * transaction at a time, so only the latest can describe a transaction that never committed (the
   * writer died, or was fenced, between the entry and the commit): it is checked against the standby
   * and removed when none of its records is there. Reads at most one transaction's range.
   */
  private async confirmLatest(
    source: TopicPartition,
    generation: number,
    latest: OffsetMapEntry | undefined,
    offsets: PartitionOffsets,
  ): Promise<OffsetMapEntry | undefined> {
    let entry = latest;
    for (let removed = 0; entry; removed++) {
      this.refuseIfStandbyLost(source, entry, offsets);
      if (await this.committed(source, entry, offsets)) return entry;
      if (removed >= 10)
        throw new KafkaError(
          'KAFKA_REQUEST_FAILED',
          `${source.topic}-${source.partition}: ${removed} offset-map entries in a row describe no committed transaction`,
        );
      this.options.logger.warn('removed an offset-map entry whose transaction never committed', {
        topic: source.topic,
        partition: source.partition,
        lastSource: entry.lastSource,
        lastStandby: entry.lastStandby,
      });
      await this.options.offsetMap.remove({ ...source, generation }, entry.lastSource);
      entry = await this.options.offsetMap.latest({ ...source, generation });
    }
    return undefined;
  }

  /** Whether any record of an entry's transaction is on the standby, committed, where the entry says. */
  private async committed(
    source: TopicPartition,
    entry: OffsetMapEntry,
    offsets: PartitionOffsets,
  ): Promise<boolean> {
    const target = this.target(source);
    const reader = this.options.targetReader;
    // Deleted by retention: too old to tell, and too old to matter; counted as mirrored.
    if (entry.lastStandby < offsets.logStart) return true;
    // The fence settled the transaction; its markers may still be on their way.
    if (offsets.lastStable <= entry.lastStandby)
      await waitVisible(reader, target, entry.lastStandby + 1, 30_000, 5);
    const isCopy = (record: SourceRecord) => {
      const src = parseSrc(lastHeader(record.headers, SRC_HEADER));
      return (
        src !== undefined &&
        src.cluster === this.options.sourceAlias &&
        src.topic === source.topic &&
        src.partition === source.partition &&
        exactTargetOf([entry], src.offset) === record.offset
      );
    };
    // The last record first (one fetch); the rest of the range only if compaction removed it.
    const last = await reader.fetch(target, entry.lastStandby, { maxBytes: 64 * 1024 });
    if (last.records.some((r) => r.offset === entry.lastStandby && isCopy(r))) return true;
    const from = Math.max(entry.runs[0]!.standbyStart, offsets.logStart);
    for await (const records of reader.readRange(target, from, entry.lastStandby + 1))
      if (records.some(isCopy)) return true;
    return false;
  }

  /** The source's end, read only when topic ids cannot tell whether the topic was re-created. */
  private async sourceEndIfIdsUnknown(
    source: TopicPartition,
    head: PartitionHead | undefined,
    live: LiveTopicIds,
    known: OffsetMapEntry | undefined,
  ): Promise<{ sourceEnd?: number }> {
    const reader = this.options.sourceReader;
    if (!reader || !known || (head?.sourceTopicId && live.source !== null)) return {};
    const [o] = await reader.offsets(source.topic, [source.partition]);
    return o ? { sourceEnd: o.highWatermark } : {};
  }

  private refuseIfStandbyLost(
    source: TopicPartition,
    entry: OffsetMapEntry | undefined,
    offsets: PartitionOffsets,
  ): void {
    if (!entry || entry.lastStandby < offsets.highWatermark) return;
    throw new KafkaError(
      'KAFKA_REQUEST_FAILED',
      `the offset map says ${source.topic}-${source.partition} offset ${entry.lastSource} is on the standby at ${entry.lastStandby}, ` +
        `but the standby partition ends at ${offsets.highWatermark}: standby data was lost; ` +
        "refusing to mirror (delete the partition's offset-map entries to mirror it again from scratch)",
      {
        details: {
          topic: source.topic,
          partition: source.partition,
          lastStandby: entry.lastStandby,
          standbyEnd: offsets.highWatermark,
        },
      },
    );
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
    state.latest = undefined;
    await writer?.close();
  }

  /** Lets running batches finish, then closes every writer. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.partitions.values()].map((s) => s.queue));
    await Promise.all([...this.partitions.values()].map((s) => this.reset(s)));
    await this.options.writers.close();
  }

  /**
   * Closes the writers of every partition but `sources` (after a rebalance gave them to another member),
   * each in its partition's queue, so that work for a partition given back meanwhile runs after it; a
   * prepare still running skips partitions no longer assigned.
   */
  async retain(sources: readonly TopicPartition[]): Promise<void> {
    const keep = new Set(sources.map(partitionKey));
    this.assigned = keep;
    const closing: Promise<unknown>[] = [];
    for (const [key, state] of this.partitions) {
      if (keep.has(key)) continue;
      state.queue = state.queue.then(() => this.reset(state)).catch(() => {});
      closing.push(state.queue);
    }
    await Promise.all(closing);
  }

  /** The partitions this process was last assigned (undefined: not told, so every partition). */
  private assigned?: Set<string>;

  private isAssigned(source: TopicPartition): boolean {
    return this.assigned === undefined || this.assigned.has(partitionKey(source));
  }
}
