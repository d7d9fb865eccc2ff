import { translateCommitted, translateThroughCopies } from '../core/offsetMap.ts';
import type { TopicPartition } from '../core/records.ts';
import type { PartitionReader } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import { copyGeneration } from './checkpoint.ts';
import { liveGeneration } from './generations.ts';

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
  /** The topic generation the offset was translated in (null: the live topic is not mirrored yet). */
  generation: number | null;
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
    /** The source topic's id now; a topic re-created since it was mirrored is not translated. */
    sourceAdmin?: { topicIds(topics: string[]): Promise<Map<string, string>> };
    /**
     * The other direction's map: after a failback, an offset before one of kdr's copies of a target
     * record goes to that record's original when the copy comes first (see checkpoint.translateAll).
     */
    counterpartMap?: OffsetMapStore;
  },
  tp: TopicPartition,
  sourceOffset: number,
): Promise<OffsetTranslation> {
  const liveId = (await deps.sourceAdmin?.topicIds([tp.topic]))?.get(tp.topic) ?? null;
  const { generation } = await liveGeneration(deps.offsetMap, tp, liveId);
  const entry =
    generation === null ? undefined : await deps.offsetMap.covering({ ...tp, generation }, sourceOffset);
  // The reverse map's head (cached) says whether a failback ever copied anything back here: without
  // one there is nothing to look up, and a translation stays one Query.
  const copies = (await deps.counterpartMap?.head(tp, { cached: true })) ? deps.counterpartMap : undefined;
  const copyGen = copies ? await copyGeneration(copies, tp, liveId) : null;
  const copy =
    copies && copyGen !== null
      ? await copies.coveringStandby({ ...tp, generation: copyGen }, sourceOffset)
      : undefined;
  const result = copies
    ? translateThroughCopies(entry, copy, sourceOffset)
    : (() => {
        const t = translateCommitted(entry, sourceOffset, null);
        return t.kind === 'exact' ? { ...t, via: 'forward' as const } : undefined;
      })();
  if (result) {
    return {
      ...tp,
      sourceOffset,
      standbyOffset: result.standbyOffset,
      exact: true,
      mirroredSourceOffset: result.mirroredSource,
      generation,
      ...(result.via === 'copy'
        ? {
            note: `source offset ${result.mirroredSource} is kdr's copy of standby offset ${result.standbyOffset} (mirrored back at a failback)`,
          }
        : {}),
    };
  }
  // Standby topics keep their names and partitions.
  const [latest, offsets] = await Promise.all([
    generation === null ? undefined : deps.offsetMap.latest({ ...tp, generation }),
    deps.targetReader.offsets(tp.topic, [tp.partition]),
  ]);
  const end = offsets[0]!.lastStable;
  const why =
    generation === null
      ? `${tp.topic} was re-created (topic id ${liveId}) and nothing of the new topic is mirrored yet`
      : `source offset ${sourceOffset} is beyond what is mirrored (last mirrored source offset: ${latest?.lastSource ?? 'none'})`;
  return {
    ...tp,
    sourceOffset,
    standbyOffset: end,
    exact: false,
    lastMirroredSourceOffset: latest?.lastSource ?? null,
    generation,
    note: `${why}; standbyOffset is the standby end offset`,
  };
}
