import { setTimeout as sleep } from 'node:timers/promises';
import type { OffsetMapEntry } from '../core/offsetMap.ts';
import type { TopicPartition } from '../core/records.ts';
import { KafkaError } from '../errors.ts';
import type { PartitionReader } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import { liveGeneration } from './generations.ts';
import { verifiedCopies } from './provenance.ts';

/** What lag and catching up need: the map, the source, and what tells a re-created topic and a copy. */
export interface LagDeps {
  offsetMap: OffsetMapStore;
  sourceReader: PartitionReader;
  /** The other direction's map: proves which source records are kdr's copies of the target's. */
  counterpartMap?: OffsetMapStore;
  /** The source topic's id now: a topic re-created since it was mirrored has nothing mirrored yet. */
  sourceAdmin?: { topicIds(topics: string[]): Promise<Map<string, string>> };
}

/** The latest entry of the generation that describes the live topic (undefined: nothing of it mirrored). */
export async function liveLatest(deps: LagDeps, tp: TopicPartition, liveIds?: Map<string, string>) {
  const ids = liveIds ?? (await deps.sourceAdmin?.topicIds([tp.topic]));
  const { generation } = await liveGeneration(deps.offsetMap, tp, ids?.get(tp.topic) ?? null);
  return generation === null ? undefined : deps.offsetMap.latest({ ...tp, generation });
}

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

/** What a running writer knows of a partition's latest entry (the mirror engine's `latestKnown`). */
export type LatestKnown =
  | { known: false }
  /** `at`: when the writer learned it (recovered or committed); another writer may have moved on since. */
  | { known: true; entry: OffsetMapEntry | undefined; at?: number };

export async function partitionLag(
  deps: LagDeps,
  topics: string[],
  now = Date.now(),
  knownLatest?: (tp: TopicPartition) => LatestKnown,
): Promise<PartitionLag[]> {
  const rows: PartitionLag[] = [];
  const ids = await deps.sourceAdmin?.topicIds(topics);
  for (const topic of topics) {
    const offsets = await deps.sourceReader.offsets(topic);
    const known = offsets.map(
      (o): LatestKnown => knownLatest?.({ topic, partition: o.partition }) ?? { known: false },
    );
    // The heads of the partitions read from the map, in a few requests rather than one each.
    await deps.offsetMap.prefetchHeads?.(
      offsets.filter((_, i) => !known[i]!.known).map((o) => ({ topic, partition: o.partition })),
    );
    const entries = await Promise.all(
      offsets.map((o, i) => {
        const k = known[i]!;
        return k.known ? k.entry : liveLatest(deps, { topic, partition: o.partition }, ids);
      }),
    );
    offsets.forEach((o, i) => {
      const entry = entries[i];
      const lastMirrored = entry?.lastSource ?? null;
      // What the log start has passed can never be mirrored: it is not lag.
      const firstUnmirrored = Math.max(lastMirrored === null ? o.logStart : lastMirrored + 1, o.logStart);
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
 * between the last mirrored offset and `end` but gaps (markers, aborted records) and proven copies of the
 * target's own records (never copied back: services/provenance.ts).
 */
export async function caughtUp(
  deps: LagDeps,
  tp: TopicPartition,
  end: number,
  logStart = 0,
  route?: { sourceAlias: string; targetAlias: string; floor?: number },
  /** The partition's latest entry when the caller has just read it (liveLatest). */
  latest: LatestKnown = { known: false },
): Promise<boolean> {
  const entry = latest.known ? latest.entry : await liveLatest(deps, tp);
  // Clamped to the log start: what it has passed can never be read (a gap the caller reports).
  const from = Math.max(entry ? entry.lastSource + 1 : (route?.floor ?? 0), logStart);
  if (from >= end) return true;
  for await (const records of deps.sourceReader.readRange(tp, from, end)) {
    const copies = route
      ? await verifiedCopies(deps.counterpartMap, tp, route.targetAlias, records)
      : new Set<number>();
    if (records.some((r) => !copies.has(r.offset))) return false;
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
  pollMs = 50,
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
    await sleep(pollMs);
  }
}
