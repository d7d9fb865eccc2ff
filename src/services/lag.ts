import { setTimeout as sleep } from 'node:timers/promises';
import { originOf } from '../core/provenance.ts';
import type { TopicPartition } from '../core/records.ts';
import { KafkaError } from '../errors.ts';
import type { PartitionReader } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';

export interface PartitionLag {
  topic: string;
  partition: number;
  /** Source end offset for read_committed consumers (last stable offset). */
  sourceEnd: number;
  lastMirrored: number | null;
  /** Offsets between the last mirrored record and the source end (transaction markers included). */
  lagOffsets: number;
  /** Source timestamp of the last mirrored record, and its age in seconds now. */
  lastMirroredTimestamp: number | null;
  lastMirroredAgeSeconds: number | null;
  mirroredAt: number | null;
}

export async function partitionLag(
  deps: { offsetMap: OffsetMapStore; sourceReader: PartitionReader },
  topics: string[],
  now = Date.now(),
): Promise<PartitionLag[]> {
  const rows: PartitionLag[] = [];
  for (const topic of topics) {
    const offsets = await deps.sourceReader.offsets(topic);
    const entries = await Promise.all(
      offsets.map((o) => deps.offsetMap.latest({ topic, partition: o.partition })),
    );
    offsets.forEach((o, i) => {
      const entry = entries[i];
      const lastMirrored = entry?.lastSource ?? null;
      const firstUnmirrored = lastMirrored === null ? o.logStart : lastMirrored + 1;
      rows.push({
        topic,
        partition: o.partition,
        sourceEnd: o.lastStable,
        lastMirrored,
        lagOffsets: Math.max(0, o.lastStable - firstUnmirrored),
        lastMirroredTimestamp: entry?.lastTimestamp ?? null,
        lastMirroredAgeSeconds: entry ? Math.max(0, (now - entry.lastTimestamp) / 1000) : null,
        mirroredAt: entry?.mirroredAt ?? null,
      });
    });
  }
  return rows;
}

/**
 * Whether the target has every committed source record below `end` that it should get: nothing left
 * between the last mirrored offset and `end` but gaps (markers, aborted records) and records whose origin
 * is the target (never copied back).
 */
export async function caughtUp(
  deps: { offsetMap: OffsetMapStore; sourceReader: PartitionReader },
  tp: TopicPartition,
  end: number,
  logStart = 0,
  route?: { sourceAlias: string; targetAlias: string; floor?: number },
): Promise<boolean> {
  const entry = await deps.offsetMap.latest(tp);
  const from = entry ? entry.lastSource + 1 : Math.max(logStart, route?.floor ?? 0);
  if (from >= end) return true;
  for await (const records of deps.sourceReader.readRange(tp, from, end)) {
    const due = route
      ? records.filter((r) => originOf(r.headers, route.sourceAlias) !== route.targetAlias)
      : records;
    if (due.length > 0) return false;
  }
  return true;
}

/**
 * Waits (bounded) until read_committed consumers of a partition see everything below `offset`. A commit
 * returns once the coordinator has decided; the markers that make the records visible are written just
 * after, so a reader right behind the writer could still stop before them.
 */
export async function waitVisible(
  reader: PartitionReader,
  tp: TopicPartition,
  offset: number,
  timeoutMs = 30_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const [o] = await reader.offsets(tp.topic, [tp.partition]);
    if (o && o.lastStable >= offset) return;
    if (Date.now() > until)
      throw new KafkaError(
        'KAFKA_UNAVAILABLE',
        `${tp.topic}-${tp.partition}: committed records up to offset ${offset - 1} are still not visible to read_committed consumers (last stable offset ${o?.lastStable}) after ${timeoutMs} ms`,
      );
    await sleep(50);
  }
}
