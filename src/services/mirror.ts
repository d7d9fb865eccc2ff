import { type MirrorLimits, planMirror } from '../core/mirrorPlan.ts';
import { buildRuns, entryFromRuns, type OffsetMapEntry } from '../core/offsetMap.ts';
import { lastHeader, parseSrc, SRC_HEADER } from '../core/provenance.ts';
import { partitionKey, type SourceRecord, type TopicPartition } from '../core/records.ts';
import { KafkaError, ProducerFencedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { PartitionReader, TransactionalWriter, TransactionalWriterFactory } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';

/**
 * Exactly-once mirroring of source partitions to the standby. Per partition, one writer at a time:
 *
 *   1. open the partition's transactional writer: this fences every older writer of the partition;
 *   2. recover what the standby has: the offset map's latest entry, then the standby's committed tail
 *      after it (a crash between a commit and its map entry leaves such a tail; the entry is repaired);
 *   3. skip records at or below the last mirrored offset (redelivered or overlapping batches);
 *   4. produce the rest in a transaction, commit, then write the offset-map entry.
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
  clock?: () => number;
}

export interface BatchResult {
  source: TopicPartition;
  mirrored: number;
  alreadyMirrored: number;
  originIsTarget: number;
  transactions: number;
  /** Last source offset the standby has after this batch (null: nothing yet). */
  lastMirrored: number | null;
  /** Highest offset of the batch, mirrored or not. */
  lastOffset: number | null;
  recovered?: RecoveryResult;
}

export interface RecoveryResult {
  lastMirrored: number | null;
  /** Records found on the standby after the last map entry (a commit whose entry was never written). */
  repaired: number;
}

interface PartitionState {
  writer?: TransactionalWriter;
  lastMirrored: number | null;
  /** Serialises work on one partition: batches of a partition must apply in order. */
  queue: Promise<unknown>;
}

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

  /** Mirrors one batch of committed source records of one partition; resolves once they are durable. */
  mirrorBatch(source: TopicPartition, records: readonly SourceRecord[]): Promise<BatchResult> {
    const key = partitionKey(source);
    let state = this.partitions.get(key);
    if (!state) {
      state = { lastMirrored: null, queue: Promise.resolve() };
      this.partitions.set(key, state);
    }
    const run = state.queue.then(() => this.mirrorSerial(source, records, state!));
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
  ) {
    if (this.closed) throw new KafkaError('KAFKA_REQUEST_FAILED', 'the mirror is closing');
    const log = this.options.logger.child({ topic: source.topic, partition: source.partition });
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt(source, records, state);
      } catch (error) {
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
  ): Promise<BatchResult> {
    let recovered: RecoveryResult | undefined;
    const maxMessageBytes = await this.ensureTopic(source.topic);
    if (!state.writer) {
      state.writer = await this.options.writers.open(source);
      recovered = await this.recover(source);
      state.lastMirrored = recovered.lastMirrored;
    }
    // Room for the record batch header around the records.
    const maxRequestBytes = Math.min(this.options.limits.maxRequestBytes, (maxMessageBytes ?? Infinity) - 512);
    const plan = planMirror({
      source,
      records,
      lastMirrored: state.lastMirrored,
      sourceAlias: this.options.sourceAlias,
      targetAlias: this.options.targetAlias,
      limits: { ...this.options.limits, maxRequestBytes },
    });
    const target = this.target(source);
    let mirrored = 0;
    for (const transaction of plan.transactions) {
      await this.options.guard?.(source);
      // A request over the limit is one record the source took compressed: it goes compressed too.
      const standbyOffsets = await state.writer.write(target, transaction.requests, {
        compressAbove: maxRequestBytes,
      });
      const sent = transaction.requests.flat();
      const entry = entryFromRuns(
        source,
        buildRuns(sent.map((r, i) => [r.sourceOffset, standbyOffsets[i]!] as const)),
        sent.at(-1)!.timestamp,
        this.clock(),
      );
      await this.options.offsetMap.put(entry);
      state.lastMirrored = transaction.lastSource;
      mirrored += transaction.records;
    }
    return {
      source,
      mirrored,
      alreadyMirrored: plan.alreadyMirrored,
      originIsTarget: plan.originIsTarget,
      transactions: plan.transactions.length,
      lastMirrored: state.lastMirrored,
      lastOffset: plan.lastOffset,
      ...(recovered ? { recovered } : {}),
    };
  }

  /**
   * What the standby has of a source partition. Runs right after the writer was opened (the fence), so no
   * other writer can commit while the tail is read.
   */
  async recover(source: TopicPartition): Promise<RecoveryResult> {
    const target = this.target(source);
    const { offsetMap, targetReader, sourceAlias } = this.options;
    const entry = await offsetMap.latest(source);
    const [offsets] = await targetReader.offsets(target.topic, [target.partition]);
    if (!offsets)
      throw new KafkaError('KAFKA_REQUEST_FAILED', `no offsets for ${target.topic}-${target.partition}`);
    if (entry && entry.lastStandby >= offsets.lastStable) {
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
    // Without any entry, the whole target partition could hold this direction's records; a floor (failback:
    // nothing reverse-mirrored can precede the last forward-mirrored record) narrows the scan.
    const floor = entry ? undefined : await this.options.recoveryFloor?.(source);
    const from = entry ? entry.lastStandby + 1 : Math.max(offsets.logStart, floor ?? 0);
    const pairs: [number, number][] = [];
    let lastTimestamp = 0;
    for await (const records of targetReader.readRange(target, from, offsets.lastStable)) {
      for (const record of records) {
        const src = parseSrc(lastHeader(record.headers, SRC_HEADER));
        if (
          !src ||
          src.cluster !== sourceAlias ||
          src.topic !== source.topic ||
          src.partition !== source.partition
        )
          continue;
        const previous = pairs.at(-1)?.[0] ?? entry?.lastSource ?? -1;
        if (src.offset <= previous) {
          this.options.logger.error(
            'standby holds a source record twice; keeping the first copy in the offset map',
            {
              topic: source.topic,
              partition: source.partition,
              sourceOffset: src.offset,
              standbyOffset: record.offset,
            },
          );
          continue;
        }
        pairs.push([src.offset, record.offset]);
        lastTimestamp = record.timestamp;
      }
    }
    if (pairs.length === 0) return { lastMirrored: entry?.lastSource ?? null, repaired: 0 };
    const repair: OffsetMapEntry = entryFromRuns(source, buildRuns(pairs), lastTimestamp, this.clock());
    await offsetMap.put(repair);
    this.options.logger.info('repaired the offset map from the standby tail', {
      topic: source.topic,
      partition: source.partition,
      records: pairs.length,
      lastSource: repair.lastSource,
    });
    return { lastMirrored: repair.lastSource, repaired: pairs.length };
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
