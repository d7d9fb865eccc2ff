import { exactTargetOf } from '../core/offsetMap.ts';
import { lastHeader, parseSrc, SRC_HEADER } from '../core/provenance.ts';
import type { SourceRecord, TopicPartition } from '../core/records.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import { liveGeneration } from './generations.ts';

/**
 * Which records of a source partition are kdr's own copies of the target cluster's records, proven and
 * not trusted: the record's kdr.src names the target partition (`targetAlias/<topic>/<partition>/<o>`)
 * AND the other direction's offset map (`counterpart`: the target -> source map) says target offset o was
 * mirrored to exactly this record's offset. An application that forwards the headers of a record it
 * consumed (Kafka Streams does by default) writes a record elsewhere in the log, so it is never taken for
 * a copy. One Query for a batch that claims anything; none for a batch that claims nothing.
 */
export async function verifiedCopies(
  counterpart: OffsetMapStore | undefined,
  target: TopicPartition,
  targetAlias: string,
  records: readonly SourceRecord[],
  /** The target topic's id: the other direction's map proves copies only of that very topic. */
  targetTopicId: string | null = null,
): Promise<Set<number>> {
  const claims = new Map<number, number>();
  for (const record of records) {
    const src = parseSrc(lastHeader(record.headers, SRC_HEADER));
    if (
      src &&
      src.cluster === targetAlias &&
      src.topic === target.topic &&
      src.partition === target.partition
    )
      claims.set(record.offset, src.offset);
  }
  const verified = new Set<number>();
  if (claims.size === 0 || !counterpart) return verified;
  let low = Number.POSITIVE_INFINITY;
  let high = -1;
  for (const o of claims.values()) {
    low = Math.min(low, o);
    high = Math.max(high, o);
  }
  const { generation } = await liveGeneration(counterpart, target, targetTopicId);
  if (generation === null) return verified;
  const entries = await counterpart.coveringRange({ ...target, generation }, low, high);
  for (const [offset, claimed] of claims)
    if (exactTargetOf(entries, claimed) === offset) verified.add(offset);
  return verified;
}
