import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, Kafka } from 'kafkajs';
import type { TopicPartition } from '../../core/records.ts';
import { describeError, isKdrError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { BatchResult, MirrorEngine } from '../../services/mirror.ts';
import { KafkaAdmin } from './admin.ts';
import { fromKafkajs, type KafkajsRecord } from './records.ts';

/**
 * `kdr mirror`: a kafkajs consumer group on the source feeding the mirror engine. Several processes with
 * the same group share the partitions. The group's committed offsets are only a starting hint: what the
 * standby has is decided by the engine, so a batch delivered again is skipped, never duplicated.
 *
 * A failed batch is never skipped: the partition is sought back to the batch's first offset and retried
 * with backoff (kafkajs would otherwise go on fetching past it).
 */

export interface GroupMirrorOptions {
  groupId: string;
  topics: string[];
  partitionConcurrency: number;
  logger: Logger;
  onBatch?: (result: BatchResult, highWatermark: number) => void;
  onError?: (source: TopicPartition, error: unknown, attempt: number) => void;
}

const MAX_BACKOFF_MS = 30_000;
/**
 * Writers opened and recovered at once after an assignment, ahead of the first batches. Each is a few
 * round trips (InitProducerId, the map's head and latest entry, the standby's offsets), so this bounds the
 * requests a start-up puts on the standby's coordinator and the offset table, not CPU.
 */
const PREPARE_CONCURRENCY = 32;

/** The wait before retrying a partition's batch for the `attempt`th time: 500 ms, doubling, at most 30 s. */
export function retryBackoffMs(attempt: number): number {
  return Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(attempt, 10));
}

const MIB = 1024 * 1024;
/** Per-partition and per-fetch byte limits before the topics' own size limits are known. */
export const FETCH_FLOOR = { perPartition: 4 * MIB, total: 32 * MIB } as const;
/** The broker's max.message.bytes default (1 MiB + 12), for a topic whose limit cannot be read. */
const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/**
 * Fetch limits under which no batch waits on luck. The broker returns a batch larger than the partition's
 * limit only for the first partition of a fetch that returns data (KIP-74); for every later one it returns
 * a truncated batch, which kafkajs drops. kafkajs sends one fetch per broker (its consumer group lists the
 * partitions in a fixed order, but `Broker.fetch` shuffles them on every request), so with a 4 MiB limit a
 * 6 MiB batch came back only in the fetches where its partition happened to be first among those with
 * data: with n busy partitions on its broker about one fetch in n, and a partition of such batches could
 * fall behind for good. So the per-partition limit is at least the largest batch any mirrored topic can
 * hold (max.message.bytes bounds a whole record batch), and the fetch limit at least twice that, so that a
 * full batch still fits after an earlier partition's share. Partitions that lag by more than the fetch limit
 * can still fill a response ahead of it, but only until they catch up: a delay, not starvation.
 *
 * Memory: kafkajs keeps about one fetch response per source broker at a time (a broker's next fetch waits
 * until its batches are processed), each at most `maxBytes` of compressed batches (the broker caps it with
 * its own fetch.max.bytes, 55 MiB by default), which expand by their compression ratio when decoded. With
 * topic limits up to 16 MiB that is the former 32 MiB per broker; a topic allowing 20 MiB batches raises
 * it to 40 MiB.
 */
export function fetchLimits(largestBatchBytes: number | undefined): {
  maxBytesPerPartition: number;
  maxBytes: number;
} {
  const maxBytesPerPartition = Math.max(FETCH_FLOOR.perPartition, largestBatchBytes ?? 0);
  return { maxBytesPerPartition, maxBytes: Math.max(FETCH_FLOOR.total, 2 * maxBytesPerPartition) };
}

export class GroupMirror {
  private consumer?: Consumer;
  private readonly failures = new Map<string, number>();
  private stopping = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly engine: MirrorEngine,
    private readonly options: GroupMirrorOptions,
  ) {}

  async start(): Promise<void> {
    const { groupId, topics, partitionConcurrency, logger } = this.options;
    const limits = fetchLimits(await this.largestBatchBytes(topics));
    logger.debug('fetch limits', { groupId, ...limits });
    const consumer = this.kafka.consumer({
      groupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      // Sized so that no partition starves behind another (see fetchLimits).
      ...limits,
      // A mirror that died must hand its partitions over quickly: the group waits this long for it.
      sessionTimeout: 10_000,
      // A fetch waits at most this long for data: bounds how long a stop (or a rebalance) waits for it.
      maxWaitTimeInMs: 500,
      rebalanceTimeout: 30_000,
      heartbeatInterval: 1000,
      retry: { retries: 10, initialRetryTime: 200, maxRetryTime: 10_000 },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      const assigned = event.payload.memberAssignment as Record<string, number[]>;
      logger.info('partitions assigned', { groupId, assigned });
      const sources = Object.entries(assigned).flatMap(([topic, partitions]) =>
        partitions.map((partition) => ({ topic, partition })),
      );
      // Writers of partitions another member now has would only hold connections (that member fences them).
      void this.engine
        .retain(sources)
        .then(() => this.engine.prepare(sources, PREPARE_CONCURRENCY))
        .catch((error) =>
          logger.warn('preparing the assigned partitions failed', { error: describeError(error) }),
        );
    });
    await consumer.connect();
    if (topics.length > 0) await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({
      autoCommit: true,
      autoCommitInterval: 5000,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: partitionConcurrency,
      eachBatch: async ({
        batch,
        resolveOffset,
        heartbeat,
        commitOffsetsIfNecessary,
        isRunning,
        isStale,
      }) => {
        if (!isRunning() || isStale() || this.stopping) return;
        const source = { topic: batch.topic, partition: batch.partition };
        const key = `${source.topic}-${source.partition}`;
        try {
          const records = (batch.messages as unknown as KafkajsRecord[]).map(fromKafkajs);
          const result = await this.engine.mirrorBatch(source, records);
          logger.debug('batch mirrored', {
            topic: source.topic,
            partition: source.partition,
            firstOffset: batch.firstOffset(),
            lastOffset: batch.lastOffset(),
            highWatermark: batch.highWatermark,
            mirrored: result.mirrored,
            lastMirrored: result.lastMirrored,
          });
          this.failures.delete(key);
          resolveOffset(batch.lastOffset());
          await commitOffsetsIfNecessary();
          await heartbeat();
          this.options.onBatch?.(result, Number(batch.highWatermark));
        } catch (error) {
          const attempt = (this.failures.get(key) ?? 0) + 1;
          this.failures.set(key, attempt);
          this.options.onError?.(source, error, attempt);
          logger.error('mirroring a batch failed; it will be retried from its first offset', {
            topic: source.topic,
            partition: source.partition,
            firstOffset: batch.firstOffset(),
            attempt,
            retryable: isKdrError(error) ? error.retryable : undefined,
            error: describeError(error),
          });
          const first = batch.firstOffset();
          if (first !== null)
            consumer.seek({ topic: source.topic, partition: source.partition, offset: first });
          await this.backoff(attempt, heartbeat);
        }
      },
    });
  }

  /**
   * The largest record batch the selected source topics can hold: the highest max.message.bytes among
   * them. Read when the consumer starts; the mirror loop restarts it when topics or partitions change, so a
   * limit raised on a running source takes effect at the next restart. When the configs cannot be read,
   * assume the broker default (the floor covers it) and say so.
   */
  private async largestBatchBytes(topics: string[]): Promise<number | undefined> {
    if (topics.length === 0) return undefined;
    const admin = new KafkaAdmin(this.kafka, 'source');
    try {
      const states = await admin.describeTopics(topics);
      let largest = 0;
      for (const state of states) {
        const value = Number(state.configs['max.message.bytes']?.value ?? DEFAULT_MAX_MESSAGE_BYTES);
        if (Number.isSafeInteger(value)) largest = Math.max(largest, value);
      }
      return largest;
    } catch (error) {
      this.options.logger.warn(
        "could not read the source topics' max.message.bytes; fetching with the default limits",
        { error: describeError(error), ...FETCH_FLOOR },
      );
      return undefined;
    } finally {
      await admin.close().catch(() => {});
    }
  }

  /** Waits before a retry while keeping the group membership alive. */
  private async backoff(attempt: number, heartbeat: () => Promise<void>): Promise<void> {
    let remaining = retryBackoffMs(attempt);
    while (remaining > 0 && !this.stopping) {
      const slice = Math.min(remaining, 2000);
      await sleep(slice);
      remaining -= slice;
      await heartbeat().catch(() => {});
    }
  }

  /** Stops consuming, lets the running batches finish and commits what was mirrored. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.consumer?.disconnect();
    this.consumer = undefined;
  }
}
