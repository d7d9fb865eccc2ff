import type { Kafka } from 'kafkajs';
import pRetry, { AbortError } from 'p-retry';
import { type SourceRecord, type TopicPartition, toOffset } from '../../core/records.ts';
import { KafkaError } from '../../errors.ts';
import type { FetchResult, PartitionOffsets, PartitionReader } from '../../ports/kafka.ts';
import { createCluster, type KafkajsBroker, type KafkajsCluster } from './cluster.ts';
import { kafkaProtocolError, toKdrError } from './errors.ts';
import { fromKafkajs, type KafkajsRecord } from './records.ts';

/**
 * Reads partitions by offset without joining a consumer group: kafkajs only offers group consumers, so
 * this talks to partition leaders through kafkajs's cluster layer (the same code its consumer uses) and
 * filters aborted transactions and control records with kafkajs's own Batch. Used to read the standby's
 * tail on recovery, to re-read source ranges exactly, and to check lag.
 */

// kafkajs's own aborted-transaction and control-record filtering (what its consumer uses).
import KafkajsBatch from 'kafkajs/src/consumer/batch.js';

const Batch = KafkajsBatch as unknown as new (
  topic: string,
  fetchedOffset: string,
  partitionData: unknown,
) => { messages: RawRecord[] };

const READ_COMMITTED = 1;

interface PartitionData {
  partition: number;
  highWatermark: string;
  lastStableOffset: string;
  lastStartOffset: string;
  messages: RawRecord[] & { lastBatchEndOffset?: string | null };
}
const READ_UNCOMMITTED = 0;
const EARLIEST = -2;
const LATEST = -1;

interface RawRecord extends KafkajsRecord {
  isControlRecord: boolean;
}

const RETRYABLE_METADATA = new Set([
  'NOT_LEADER_FOR_PARTITION',
  'NOT_LEADER_OR_FOLLOWER',
  'LEADER_NOT_AVAILABLE',
  'UNKNOWN_TOPIC_OR_PARTITION',
  'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH',
  'REPLICA_NOT_AVAILABLE',
]);

export class KafkaPartitionReader implements PartitionReader {
  private cluster?: KafkajsCluster;
  private connecting?: Promise<KafkajsCluster>;
  private readonly knownTopics = new Set<string>();

  constructor(
    private readonly kafka: Kafka,
    private readonly clusterName: string,
  ) {}

  private async connected(): Promise<KafkajsCluster> {
    if (this.cluster) return this.cluster;
    this.connecting ??= (async () => {
      const cluster = createCluster(this.kafka);
      await cluster.connect();
      this.cluster = cluster;
      return cluster;
    })().catch((error) => {
      this.connecting = undefined;
      throw toKdrError(error, `connecting to the ${this.clusterName} cluster`);
    });
    return this.connecting;
  }

  private async leader(topic: string, partition: number, refresh: boolean): Promise<KafkajsBroker> {
    const cluster = await this.connected();
    if (!this.knownTopics.has(topic)) {
      await cluster.addMultipleTargetTopics([topic]);
      this.knownTopics.add(topic);
    } else if (refresh) {
      await cluster.refreshMetadata();
    }
    const leaders = cluster.findLeaderForPartitions(topic, [partition]);
    const nodeId = Object.keys(leaders).find((id) => leaders[id]!.includes(partition));
    if (nodeId === undefined) {
      throw new KafkaError(
        'KAFKA_UNAVAILABLE',
        `no leader for ${topic}-${partition} on the ${this.clusterName} cluster`,
      );
    }
    return cluster.findBroker({ nodeId });
  }

  /** Runs a request against a partition leader, refreshing metadata when leadership moved. */
  private async withLeader<T>(
    tp: TopicPartition,
    doing: string,
    fn: (broker: KafkajsBroker) => Promise<T>,
  ): Promise<T> {
    let refresh = false;
    return pRetry(
      async () => {
        try {
          return await fn(await this.leader(tp.topic, tp.partition, refresh));
        } catch (error) {
          const { type } = kafkaProtocolError(error);
          refresh = true;
          if (type && !RETRYABLE_METADATA.has(type)) throw new AbortError(error as Error);
          throw error;
        }
      },
      { retries: 5, minTimeout: 200, maxTimeout: 2000 },
    ).catch((error: unknown) => {
      throw toKdrError(error, `${doing} ${tp.topic}-${tp.partition} on the ${this.clusterName} cluster`, {
        cluster: this.clusterName,
        topic: tp.topic,
        partition: tp.partition,
      });
    });
  }

  async fetch(
    tp: TopicPartition,
    offset: number,
    options: { maxBytes?: number; maxWaitMs?: number } = {},
  ): Promise<FetchResult> {
    const maxBytes = options.maxBytes ?? 8 * 1024 * 1024;
    const response = await this.withLeader(tp, 'reading', (broker) =>
      broker.fetch({
        isolationLevel: READ_COMMITTED,
        maxWaitTime: options.maxWaitMs ?? 0,
        minBytes: 1,
        maxBytes,
        topics: [
          {
            topic: tp.topic,
            partitions: [{ partition: tp.partition, fetchOffset: String(offset), maxBytes }],
          },
        ],
      }),
    );
    const data = (response.responses[0]?.partitions as PartitionData[] | undefined)?.find(
      (p) => p.partition === tp.partition,
    );
    if (!data)
      throw new KafkaError('KAFKA_REQUEST_FAILED', `no fetch response for ${tp.topic}-${tp.partition}`);
    const batch = new Batch(tp.topic, String(offset), data);
    let nextOffset = offset;
    const raw = data.messages;
    if (raw.length > 0) nextOffset = Math.max(nextOffset, toOffset(raw[raw.length - 1]!.offset) + 1);
    if (raw.lastBatchEndOffset) nextOffset = Math.max(nextOffset, toOffset(raw.lastBatchEndOffset) + 1);
    return {
      records: batch.messages.filter((m) => !m.isControlRecord).map(fromKafkajs),
      nextOffset,
      highWatermark: toOffset(data.highWatermark),
      lastStable: toOffset(data.lastStableOffset),
      logStart: toOffset(data.lastStartOffset),
    };
  }

  async *readRange(tp: TopicPartition, from: number, to: number): AsyncGenerator<SourceRecord[]> {
    let offset = from;
    let idle = 0;
    while (offset < to) {
      const result = await this.fetch(tp, offset);
      const records = result.records.filter((r) => r.offset < to);
      if (records.length > 0) yield records;
      if (result.nextOffset > offset) {
        offset = result.nextOffset;
        idle = 0;
      } else if (offset >= result.lastStable || ++idle > 20) {
        // Nothing more is readable: [offset, to) is beyond the stable end, or the log moved under us.
        if (offset < to && offset < result.lastStable) {
          throw new KafkaError(
            'KAFKA_REQUEST_FAILED',
            `no progress reading ${tp.topic}-${tp.partition} at offset ${offset}`,
          );
        }
        return;
      }
    }
  }

  async offsets(topic: string, partitions?: number[]): Promise<PartitionOffsets[]> {
    const cluster = await this.connected();
    if (!this.knownTopics.has(topic)) {
      await cluster.addMultipleTargetTopics([topic]).catch((error) => {
        throw toKdrError(error, `reading metadata of ${topic} on the ${this.clusterName} cluster`, { topic });
      });
      this.knownTopics.add(topic);
    }
    const ids = partitions ?? cluster.findTopicPartitionMetadata(topic).map((p) => p.partitionId);
    return Promise.all(
      ids
        .sort((a, b) => a - b)
        .map(async (partition) => {
          const tp = { topic, partition };
          const ask = (isolationLevel: number, timestamp: number) =>
            this.withLeader(tp, 'listing offsets of', async (broker) => {
              const r = await broker.listOffsets({
                isolationLevel,
                topics: [{ topic, partitions: [{ partition, timestamp }] }],
              });
              return toOffset(r.responses[0]!.partitions[0]!.offset);
            });
          const [logStart, highWatermark, lastStable] = await Promise.all([
            ask(READ_UNCOMMITTED, EARLIEST),
            ask(READ_UNCOMMITTED, LATEST),
            ask(READ_COMMITTED, LATEST),
          ]);
          return { partition, logStart, highWatermark, lastStable };
        }),
    );
  }

  async close(): Promise<void> {
    const cluster = this.cluster;
    this.cluster = undefined;
    this.connecting = undefined;
    this.knownTopics.clear();
    await cluster?.disconnect();
  }
}
