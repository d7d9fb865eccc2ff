import pLimit from 'p-limit';
import { translateCommitted } from '../core/offsetMap.ts';
import type { SourceRecord, TopicPartition } from '../core/records.ts';
import { isInternalTopic } from '../core/topicSync.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GroupAdmin, PartitionOffsets, PartitionReader, TopicAdmin } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import type { GroupCheckpoint, PartitionObservation, StateStore } from '../ports/stateStore.ts';
import { liveGeneration } from './generations.ts';

/**
 * Checkpoints: every consumer group's committed offsets on the primary for the mirrored topics,
 * translated through the offset map and stored with the time; plus what the primary's partitions looked
 * like (end offsets, what was not yet mirrored), which an unplanned failover uses to report its RPO.
 */

export interface CheckpointDeps {
  primaryAdmin: TopicAdmin & GroupAdmin;
  standbyAdmin: GroupAdmin;
  primaryReader: PartitionReader;
  offsetMap: OffsetMapStore;
  stateStore: StateStore;
  selectTopic: (topic: string) => boolean;
  selectGroup: (group: string) => boolean;
  logger: Logger;
  clock?: () => number;
}

export interface CheckpointResult {
  at: number;
  groups: number;
  checkpoints: GroupCheckpoint[];
  observations: PartitionObservation[];
  /** The observations' gaps: ranges deleted on the primary before they were mirrored. */
  gaps: LogStartGap[];
  committedOnStandby: string[];
  warnings: string[];
}

/**
 * A range of a partition deleted (retention, DeleteRecords) before kdr read it: reported, never retried.
 * `count` counts offsets, so it is an upper bound of the records lost unless `markersOnly` says none were.
 */
export type LogStartGap = NonNullable<PartitionObservation['gap']>;

/** The gap [from, logStart) when a read meant to start at `from` finds the log starting later. */
export function gapBelow(
  tp: TopicPartition,
  from: number,
  logStart: number,
  seenAt: number,
): LogStartGap | undefined {
  if (from >= logStart) return undefined;
  return { topic: tp.topic, partition: tp.partition, from, to: logStart, count: logStart - from, seenAt };
}

/**
 * Offsets of a partition still to mirror as observed: from the first unmirrored offset, past what was
 * deleted before it was read (a gap is not lag: it can never be mirrored) and what is known to hold only
 * transaction markers, to the end.
 */
export function unmirroredOffsets(o: PartitionObservation): number {
  const from = Math.max(
    o.lastMirrored === null ? 0 : o.lastMirrored + 1,
    o.gap?.to ?? 0,
    o.markersOnlyTo ?? 0,
  );
  return Math.max(0, o.endOffset - from);
}

/** Whether an earlier observation saw that every offset of the gap held no committed record. */
export function provenMarkersOnly(gap: LogStartGap, earlier: PartitionObservation | undefined): boolean {
  return (
    earlier !== undefined &&
    earlier.topic === gap.topic &&
    earlier.partition === gap.partition &&
    earlier.lastMirrored !== null &&
    earlier.markersOnlyTo !== undefined &&
    earlier.lastMirrored + 1 <= gap.from &&
    earlier.markersOnlyTo >= gap.to
  );
}

/** The gap as proven by earlier observations (one per partition), when they prove it held no record. */
export function withProof(gap: LogStartGap, earlier: Map<string, PartitionObservation>): LogStartGap {
  return provenMarkersOnly(gap, earlier.get(partitionKey(gap))) ? { ...gap, markersOnly: true } : gap;
}

export const partitionKey = (tp: TopicPartition) => `${tp.topic}\u0000${tp.partition}`;

/** Gaps by partition; a gap seen again, grown or adjacent is merged (a drain sees it on every pass). */
export class GapLog {
  private readonly gaps = new Map<string, LogStartGap[]>();

  add(gap: LogStartGap | undefined): void {
    if (!gap) return;
    const key = partitionKey(gap);
    let merged = gap;
    const rest: LogStartGap[] = [];
    for (const g of this.gaps.get(key) ?? []) {
      if (g.from <= merged.to && merged.from <= g.to) {
        const from = Math.min(g.from, merged.from);
        const to = Math.max(g.to, merged.to);
        // Still proven when both parts were, or one proven part covers the whole.
        const proven = [g, merged].filter((x) => x.markersOnly);
        const markersOnly =
          proven.length === 2 || proven.some((x) => x.from <= from && x.to >= to)
            ? { markersOnly: true }
            : {};
        merged = {
          topic: g.topic,
          partition: g.partition,
          from,
          to,
          count: to - from,
          ...markersOnly,
          seenAt: Math.min(g.seenAt, merged.seenAt),
        };
      } else rest.push(g);
    }
    this.gaps.set(key, [...rest, merged]);
  }

  list(): LogStartGap[] {
    return [...this.gaps.values()]
      .flat()
      .sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition || a.from - b.from);
  }
}

/**
 * The stored checkpoint's observations by partition (partitionKey): what can prove a gap held only
 * markers. Empty when they cannot be read: the gaps then stay upper bounds.
 */
export async function previousObservations(
  stateStore: Pick<StateStore, 'getCheckpoints'>,
  logger: Logger,
): Promise<Map<string, PartitionObservation>> {
  try {
    const set = await stateStore.getCheckpoints();
    return new Map(set.observations.map((o) => [partitionKey(o), o]));
  } catch (error) {
    logger.warn('could not read the previous checkpoint', { error: describeError(error) });
    return new Map();
  }
}

/** One line for reports and logs. */
export function describeGap(gap: LogStartGap, cluster: string): string {
  const range = gap.count === 1 ? `offset ${gap.from} was` : `offsets ${gap.from}-${gap.to - 1} were`;
  return `${gap.topic}-${gap.partition}: ${range} deleted on ${cluster} before kdr read ${gap.count === 1 ? 'it' : 'them'}; ${
    gap.markersOnly
      ? 'only transaction markers or aborted records were there: nothing was lost'
      : `at most ${gap.count} record${gap.count === 1 ? '' : 's'} lost (transaction markers take offsets too)`
  }`;
}

/** A partition's current log start (undefined when even that cannot be read). */
export async function logStartOf(reader: PartitionReader, tp: TopicPartition): Promise<number | undefined> {
  const [o] = await reader.offsets(tp.topic, [tp.partition]).catch(() => []);
  return o?.logStart;
}

/**
 * Every committed record in [from, to) that still exists: the read starts at the partition's current
 * log start when that is past `from`, and a read the log start overtakes (retention or DeleteRecords
 * while reading) continues from the new log start. What was deleted first goes to `onGap`.
 */
export async function* readFromLogStart(
  reader: PartitionReader,
  tp: TopicPartition,
  from: number,
  to: number,
  options: { logStart?: number; onGap: (gap: LogStartGap) => void; clock?: () => number },
): AsyncGenerator<SourceRecord[]> {
  const clock = options.clock ?? Date.now;
  let next = from;
  let logStart = options.logStart ?? (await logStartOf(reader, tp)) ?? from;
  for (let moved = 0; ; moved++) {
    const gap = gapBelow(tp, next, Math.min(logStart, to), clock());
    if (gap) {
      options.onGap(gap);
      next = gap.to;
    }
    if (next >= to) return;
    try {
      for await (const records of reader.readRange(tp, next, to)) {
        next = records.at(-1)!.offset + 1;
        yield records;
      }
      return;
    } catch (error) {
      // Only a log start that moved past the read makes it worth another try; a few at most.
      const now = await logStartOf(reader, tp);
      if (now === undefined || now <= next || moved >= 5) throw error;
      logStart = now;
    }
  }
}

export async function mirroredTopics(
  deps: Pick<CheckpointDeps, 'primaryAdmin' | 'selectTopic'>,
): Promise<string[]> {
  const topics = await deps.primaryAdmin.listTopics();
  return topics.filter((name) => !isInternalTopic(name) && deps.selectTopic(name)).sort();
}

/**
 * Translates many committed offsets at once: one range Query per partition (the entries between the
 * smallest and the largest offset), then every offset against those entries. null: beyond what is mirrored.
 * `topicIds`: the id of the source topic the offsets belong to; offsets of a topic that no generation of the
 * map describes (re-created, not mirrored yet) are not translated through an old topic's runs (null).
 */
export async function translateAll<T extends TopicPartition & { offset: number }>(
  offsetMap: OffsetMapStore,
  items: T[],
  options: { concurrency?: number; topicIds?: Map<string, string> } = {},
): Promise<(T & { standbyOffset: number | null })[]> {
  const concurrency = options.concurrency ?? 8;
  const byPartition = new Map<string, T[]>();
  for (const item of items) {
    const key = `${item.topic}\u0000${item.partition}`;
    byPartition.set(key, [...(byPartition.get(key) ?? []), item]);
  }
  const limit = pLimit(concurrency);
  const translated = await Promise.all(
    [...byPartition.values()].map((group) =>
      limit(async () => {
        const offsets = group.map((g) => g.offset);
        const tp = { topic: group[0]!.topic, partition: group[0]!.partition };
        const { generation } = await liveGeneration(offsetMap, tp, options.topicIds?.get(tp.topic) ?? null);
        if (generation === null) return group.map((item) => ({ ...item, standbyOffset: null }));
        const entries = await offsetMap.coveringRange(
          { ...tp, generation },
          Math.min(...offsets),
          Math.max(...offsets),
        );
        return group.map((item) => {
          const entry = entries.find((e) => e.lastSource >= item.offset);
          const t = translateCommitted(entry, item.offset, null);
          return { ...item, standbyOffset: t.kind === 'exact' ? t.standbyOffset : null };
        });
      }),
    ),
  );
  return translated.flat();
}

export async function runCheckpoint(
  deps: CheckpointDeps,
  options: { commitOnStandby: boolean; mirrorGroups: string[] },
): Promise<CheckpointResult> {
  const clock = deps.clock ?? Date.now;
  const topics = await mirroredTopics(deps);
  const warnings: string[] = [];
  const groups = (await deps.primaryAdmin.listGroups()).filter(
    (g) => deps.selectGroup(g) && !options.mirrorGroups.includes(g) && !g.startsWith('kdr-mirror-'),
  );
  // Groups, translations and partitions in parallel (bounded): a failover's RTO includes this.
  const limit = pLimit(16);
  const perGroup = await Promise.all(
    groups.map((group) =>
      limit(async () => {
        const committed = await deps.primaryAdmin.committedOffsets(group, topics);
        const at = clock();
        return committed.map((c) => ({ group, ...c, at }));
      }),
    ),
  );
  const topicIds = (await deps.primaryAdmin.topicIds?.(topics)) ?? new Map<string, string>();
  const checkpoints: GroupCheckpoint[] = (
    await translateAll(deps.offsetMap, perGroup.flat(), { topicIds })
  ).map((c) => ({
    group: c.group,
    topic: c.topic,
    partition: c.partition,
    sourceOffset: c.offset,
    standbyOffset: c.standbyOffset,
    sourceTopicId: topicIds.get(c.topic) ?? null,
    checkpointedAt: c.at,
  }));
  // The previous checkpoint's observations, read only when a gap needs them: they can prove that the
  // deleted offsets held nothing but transaction markers (an idle transactional topic past retention).
  let earlier: Promise<Map<string, PartitionObservation>> | undefined;
  const previous = () => {
    earlier ??= previousObservations(deps.stateStore, deps.logger);
    return earlier;
  };
  const observations: PartitionObservation[] = (
    await Promise.all(
      topics.map(async (topic) =>
        Promise.all(
          (
            await deps.primaryReader.offsets(topic)
          ).map((o) =>
            limit(() =>
              observe(
                deps,
                { topic, partition: o.partition },
                o,
                previous,
                clock,
                topicIds.get(topic) ?? null,
              ),
            ),
          ),
        ),
      ),
    )
  ).flat();
  const gaps = observations.flatMap((o) => (o.gap ? [o.gap] : []));
  for (const gap of gaps) if (!gap.markersOnly) deps.logger.warn(describeGap(gap, 'the primary'), { gap });
  const at = clock();
  await deps.stateStore.putCheckpoints({ groups: checkpoints, observations, at });

  const committedOnStandby: string[] = [];
  if (options.commitOnStandby) {
    for (const group of [...new Set(checkpoints.map((c) => c.group))]) {
      const offsets = checkpoints
        .filter((c) => c.group === group && c.standbyOffset !== null)
        .map((c) => ({ topic: c.topic, partition: c.partition, offset: c.standbyOffset! }));
      if (offsets.length === 0) continue;
      try {
        const state = await deps.standbyAdmin.groupState(group);
        if (state !== 'Empty' && state !== 'Dead') {
          warnings.push(`group ${group} is ${state} on the standby: its offsets there were left alone`);
          continue;
        }
        await deps.standbyAdmin.commitOffsets(group, offsets);
        committedOnStandby.push(group);
      } catch (error) {
        warnings.push(`group ${group}: committing on the standby failed: ${describeError(error)}`);
      }
    }
  }
  for (const w of warnings) deps.logger.warn(w);
  return {
    at,
    groups: new Set(checkpoints.map((c) => c.group)).size,
    checkpoints,
    observations,
    gaps,
    committedOnStandby,
    warnings,
  };
}

/**
 * What a primary partition looks like now: its end, the last mirrored offset, the timestamp of the first
 * record not mirrored, and, when log start is past the last mirrored offset, the gap: what was deleted
 * there can never be mirrored, and the reads start at log start instead of failing.
 */
async function observe(
  deps: Pick<CheckpointDeps, 'primaryReader' | 'offsetMap'>,
  tp: TopicPartition,
  offsets: PartitionOffsets,
  previous: () => Promise<Map<string, PartitionObservation>>,
  clock: () => number,
  liveTopicId: string | null = null,
): Promise<PartitionObservation> {
  // Of the generation that describes the live topic: a re-created topic has nothing mirrored yet.
  const { generation } = await liveGeneration(deps.offsetMap, tp, liveTopicId);
  const latest = generation === null ? undefined : await deps.offsetMap.latest({ ...tp, generation });
  const lastMirrored = latest?.lastSource ?? null;
  let { logStart, lastStable } = offsets;
  // Where the unmirrored records start: nothing mirrored yet means from the log start, and no gap.
  let expected = lastMirrored === null ? logStart : lastMirrored + 1;
  let firstUnmirroredTimestamp: number | null = null;
  // How far from `expected` the partition is known to hold no committed record.
  let clean: number | undefined = expected;
  let gap: LogStartGap | undefined;
  for (let moved = 0; ; moved++) {
    expected = lastMirrored === null ? logStart : lastMirrored + 1;
    gap = gapBelow(tp, expected, logStart, clock());
    clean = expected;
    if (gap) {
      gap = withProof(gap, await previous());
      const proof = (await previous()).get(partitionKey(tp))?.markersOnlyTo;
      clean = gap.markersOnly ? proof : undefined;
    }
    const from = Math.max(expected, logStart);
    if (from >= lastStable) {
      if (clean !== undefined) clean = Math.max(clean, from);
      break;
    }
    try {
      const fetched = await deps.primaryReader.fetch(tp, from, { maxBytes: 64 * 1024 });
      firstUnmirroredTimestamp = fetched.records[0]?.timestamp ?? null;
      if (fetched.records.length === 0 && clean !== undefined && clean >= from)
        clean = Math.max(clean, Math.min(fetched.nextOffset, fetched.lastStable));
      break;
    } catch (error) {
      // The log start passed `from` since the offsets were read: look again from the new one.
      const [now] = await deps.primaryReader.offsets(tp.topic, [tp.partition]).catch(() => []);
      if (now === undefined || now.logStart <= from || moved >= 5) throw error;
      ({ logStart, lastStable } = now);
    }
  }
  return {
    topic: tp.topic,
    partition: tp.partition,
    sourceTopicId: liveTopicId,
    endOffset: lastStable,
    lastMirrored,
    firstUnmirroredTimestamp,
    observedAt: clock(),
    ...(gap ? { gap } : {}),
    ...(lastMirrored !== null && clean !== undefined && clean > expected ? { markersOnlyTo: clean } : {}),
  };
}
