import type { OffsetMapEntry } from '../core/offsetMap.ts';
import type { TopicPartition } from '../core/records.ts';

/** Where the offset map of one replication pair lives (DynamoDB in production and in the lab). */
export interface OffsetMapStore {
  /** Writes an entry; writing the same entry again is harmless (same key, same content). */
  put(entry: OffsetMapEntry): Promise<void>;
  /** The entry with the highest last source offset: what the standby is known to have. */
  latest(tp: TopicPartition): Promise<OffsetMapEntry | undefined>;
  /** The first entry whose last source offset is >= sourceOffset (one Query). */
  covering(tp: TopicPartition, sourceOffset: number): Promise<OffsetMapEntry | undefined>;
  /**
   * Every entry needed to translate source offsets in [from, to]: from the first whose last source offset
   * is >= from, through the first whose last source offset is >= to (one paginated Query).
   */
  coveringRange(tp: TopicPartition, from: number, to: number): Promise<OffsetMapEntry[]>;
  /** The first entry whose last standby offset is >= standbyOffset (translating positions back). */
  coveringStandby(tp: TopicPartition, standbyOffset: number): Promise<OffsetMapEntry | undefined>;
}
