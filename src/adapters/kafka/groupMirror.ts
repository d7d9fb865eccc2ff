import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, Kafka } from 'kafkajs';
import type { TopicPartition } from '../../core/records.ts';
import { describeError, isKdrError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { BatchResult, MirrorEngine } from '../../services/mirror.ts';
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

/** The wait before retrying a partition's batch for the `attempt`th time: 500 ms, doubling, at most 30 s. */
export function retryBackoffMs(attempt: number): number {
  return Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(attempt, 10));
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
    const consumer = this.kafka.consumer({
      groupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxBytesPerPartition: 4 * 1024 * 1024,
      maxBytes: 32 * 1024 * 1024,
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
