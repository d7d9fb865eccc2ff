import type { PartitionHead } from '../core/generation.ts';
import type { OffsetMapEntry } from '../core/offsetMap.ts';
import type { TopicPartition } from '../core/records.ts';
import type { WriterToken } from './kafka.ts';

/**
 * A partition of one generation of a topic (see core/generation.ts). Without `generation`, the store uses
 * the partition's current generation (from its head; 1 when it has none).
 */
export type GenerationPartition = TopicPartition & { generation?: number };

/** Where the offset map of one replication pair lives (DynamoDB in production and in the lab). */
export interface OffsetMapStore {
  /**
   * Writes an entry; writing the same entry again is harmless (same key, same content). With `head`, the
   * partition's head is written in the same request, atomically. With `token`, the write is fenced: it
   * fails (PRODUCER_FENCED) when a writer with a newer token has written the partition since.
   */
  put(
    entry: OffsetMapEntry,
    options?: { generation?: number; head?: PartitionHead; token?: WriterToken },
  ): Promise<void>;
  /** Deletes the entry ending at `lastSource` (one written for a transaction that never committed). */
  remove(tp: GenerationPartition, lastSource: number): Promise<void>;
  /** The entry with the highest last source offset: what the standby is known to have. */
  latest(tp: GenerationPartition): Promise<OffsetMapEntry | undefined>;
  /** The first entry whose last source offset is >= sourceOffset (one Query). */
  covering(tp: GenerationPartition, sourceOffset: number): Promise<OffsetMapEntry | undefined>;
  /**
   * Every entry needed to translate source offsets in [from, to]: from the first whose last source offset
   * is >= from, through the first whose last source offset is >= to (one paginated Query).
   */
  coveringRange(tp: GenerationPartition, from: number, to: number): Promise<OffsetMapEntry[]>;
  /** The first entry whose last standby offset is >= standbyOffset (translating positions back). */
  coveringStandby(tp: GenerationPartition, standbyOffset: number): Promise<OffsetMapEntry | undefined>;
  /**
   * The partition's head: its current generation, topic ids and recorded gaps (undefined: never written).
   * `cached`: a head this store read or wrote in the last few seconds will do (readers; never writers).
   */
  head(tp: TopicPartition, options?: { cached?: boolean }): Promise<PartitionHead | undefined>;
  /**
   * Reads many partitions' heads in a few requests into the cache that `head({ cached: true })` reads:
   * a checkpoint or a failover needs every partition's head, and one read each was most of their calls.
   * Heads cached for a while yet are not read again.
   */
  prefetchHeads?(tps: TopicPartition[]): Promise<void>;
  /**
   * Reads many partitions' heads now, in a few strongly consistent requests, whatever is cached (a writer
   * reads its heads after its fence: a head read before may have been moved by the writer it fenced).
   */
  readHeads?(tps: TopicPartition[]): Promise<(PartitionHead | undefined)[]>;
  /** Writes the head; never moves a partition back to an older generation. */
  putHead(tp: TopicPartition, head: PartitionHead): Promise<void>;
}
