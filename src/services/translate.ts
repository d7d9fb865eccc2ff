import { translateCommitted } from '../core/offsetMap.ts';
import type { TopicPartition } from '../core/records.ts';
import type { PartitionReader } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';

export interface OffsetTranslation {
  topic: string;
  partition: number;
  sourceOffset: number;
  standbyOffset: number;
  /** False when the offset is beyond what is mirrored: standbyOffset is then the standby's end offset. */
  exact: boolean;
  /** The source offset of the record standbyOffset points at (a gap maps to the next mirrored record). */
  mirroredSourceOffset?: number;
  lastMirroredSourceOffset?: number | null;
  note?: string;
}

/**
 * Translates a committed source offset ("next record to read") to the standby offset a consumer must
 * commit there to read the same next record. One Query; the standby end offset only when beyond.
 */
export async function translateOffset(
  deps: {
    offsetMap: OffsetMapStore;
    targetReader: PartitionReader;
  },
  tp: TopicPartition,
  sourceOffset: number,
): Promise<OffsetTranslation> {
  const entry = await deps.offsetMap.covering(tp, sourceOffset);
  const result = translateCommitted(entry, sourceOffset, null);
  if (result.kind === 'exact') {
    return {
      ...tp,
      sourceOffset,
      standbyOffset: result.standbyOffset,
      exact: true,
      mirroredSourceOffset: result.mirroredSource,
    };
  }
  // Standby topics keep their names and partitions.
  const [latest, offsets] = await Promise.all([
    deps.offsetMap.latest(tp),
    deps.targetReader.offsets(tp.topic, [tp.partition]),
  ]);
  const end = offsets[0]!.lastStable;
  return {
    ...tp,
    sourceOffset,
    standbyOffset: end,
    exact: false,
    lastMirroredSourceOffset: latest?.lastSource ?? null,
    note: `source offset ${sourceOffset} is beyond what is mirrored (last mirrored source offset: ${latest?.lastSource ?? 'none'}); standbyOffset is the standby end offset`,
  };
}
