import type { PartitionHead } from '../core/generation.ts';
import type { TopicPartition } from '../core/records.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';

/**
 * Which generation of the offset map describes the source topic as it is now. A topic re-created since
 * the mirror last wrote it has a new id that no generation knows yet: nothing of it is mirrored, and its
 * offsets must not be translated through the old topic's runs (null).
 */
export interface LiveGeneration {
  /** The generation whose entries describe the live topic, or null: none yet. */
  generation: number | null;
  head: PartitionHead | undefined;
  liveTopicId: string | null;
}

export async function liveGeneration(
  offsetMap: OffsetMapStore,
  tp: TopicPartition,
  liveTopicId: string | null,
): Promise<LiveGeneration> {
  const head = await offsetMap.head(tp, { cached: true });
  const stale = head?.sourceTopicId && liveTopicId && head.sourceTopicId !== liveTopicId;
  return { generation: stale ? null : (head?.generation ?? 1), head, liveTopicId };
}
