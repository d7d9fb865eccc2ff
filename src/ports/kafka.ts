import type { OutgoingRecord, SourceRecord, TopicPartition } from '../core/records.ts';
import type { TopicState } from '../core/topicSync.ts';

/** Offsets of one partition: first offset kept, high watermark, last stable offset (read_committed end). */
export interface PartitionOffsets {
  partition: number;
  logStart: number;
  highWatermark: number;
  lastStable: number;
}

export interface FetchResult {
  /** Committed data records (aborted records and control markers removed). */
  records: SourceRecord[];
  /** Where the next fetch starts: past every batch returned, including emptied and control batches. */
  nextOffset: number;
  highWatermark: number;
  lastStable: number;
  logStart: number;
}

/** Reads partitions by offset, without a consumer group, with read_committed isolation. */
export interface PartitionReader {
  fetch(
    tp: TopicPartition,
    offset: number,
    options?: { maxBytes?: number; maxWaitMs?: number },
  ): Promise<FetchResult>;
  /** Every committed record in [from, to), fetch by fetch. */
  readRange(tp: TopicPartition, from: number, to: number): AsyncGenerator<SourceRecord[]>;
  offsets(topic: string, partitions?: number[]): Promise<PartitionOffsets[]>;
  close(): Promise<void>;
}

/** Kafka's producer id and epoch of a transactional id: a newer writer always has a greater token. */
export interface WriterToken {
  producerId: number;
  producerEpoch: number;
}

/** Writes one source partition's records to the standby in transactions; opening it fences older writers. */
export interface TransactionalWriter {
  /**
   * Produces the requests in one transaction and commits; returns the standby offset of every record.
   * A request whose uncompressed size exceeds `compressAbove` is sent compressed (zstd when the writer's
   * own compression is none), so that a record the source accepted compressed also fits the standby.
   * `beforeCommit` runs once every record is written and its offset known, before the commit: when it
   * throws, the transaction is aborted.
   */
  write(
    target: TopicPartition,
    requests: OutgoingRecord[][],
    options?: { compressAbove?: number; beforeCommit?: (offsets: number[]) => Promise<void> },
  ): Promise<number[]>;
  /** This writer's fencing token (undefined when the client cannot tell). */
  readonly token?: WriterToken;
  close(): Promise<void>;
}

export interface PartitionBatch {
  target: TopicPartition;
  /** Produce requests in order; each becomes one record batch. */
  requests: OutgoingRecord[][];
}

/** Writes to several partitions in one transaction (a restore that re-partitions); opening it fences. */
export interface MultiPartitionWriter {
  /** One transaction over every batch; returns the offset of every record, batch by batch. */
  writeMany(batches: PartitionBatch[]): Promise<number[][]>;
  close(): Promise<void>;
}

export interface TransactionalWriterFactory {
  open(source: TopicPartition): Promise<TransactionalWriter>;
  /** A writer under an explicit transactional id (restores). */
  openWithId(transactionalId: string, details?: Record<string, unknown>): Promise<MultiPartitionWriter>;
  close(): Promise<void>;
}

/** Topic metadata and configs of a cluster, and the changes topic sync makes. */
export interface TopicAdmin {
  describeTopics(names?: string[]): Promise<TopicState[]>;
  listTopics(): Promise<string[]>;
  /** Topic ids (KIP-516) by name, for the topics that have one: a re-created topic has a new id. */
  topicIds?(topics: string[]): Promise<Map<string, string>>;
  /** Partition counts from metadata only (no configs): cheap for many topics. */
  partitionCounts(names: string[]): Promise<Map<string, number>>;
  brokerCount(): Promise<number>;
  createTopic(
    topic: string,
    partitions: number,
    replicationFactor: number,
    configs: Record<string, string>,
  ): Promise<void>;
  addPartitions(topic: string, count: number): Promise<void>;
  /** Deletes a topic and waits until the cluster no longer lists it (restore --mode replace only). */
  deleteTopic(topic: string): Promise<void>;
  alterConfigs(topic: string, configs: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

export interface GroupOffsets {
  topic: string;
  partition: number;
  offset: number;
}

/** Consumer groups of a cluster: their committed offsets, and moving them (only when empty). */
export interface GroupAdmin {
  listGroups(): Promise<string[]>;
  /** Committed offsets of a group for these topics (partitions without a commit are left out). */
  committedOffsets(group: string, topics: string[]): Promise<GroupOffsets[]>;
  /** 'Empty' and 'Dead' mean no consumer runs; anything else means members are active. */
  groupState(group: string): Promise<string>;
  /** Commits offsets for a group that has no running consumer. */
  commitOffsets(group: string, offsets: GroupOffsets[]): Promise<void>;
}
