import pLimit from 'p-limit';
import type { ControlState } from '../core/control.ts';
import { isMirrorGroup } from '../core/groups.ts';
import {
  copiedRanges,
  type OffsetMapEntry,
  translateCommitted,
  translateThroughCopies,
} from '../core/offsetMap.ts';
import { groupBy, type SourceRecord, type TopicPartition } from '../core/records.ts';
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
  /** listTopics: groups are checkpointed only on topics the standby has (one call per checkpoint). */
  standbyAdmin: GroupAdmin & Pick<TopicAdmin, 'listTopics'>;
  primaryReader: PartitionReader;
  offsetMap: OffsetMapStore;
  /**
   * The other direction's map (standby -> primary). After a failback it says which primary records are
   * kdr's copies of standby records: never to be mirrored (not lag), and a committed offset before one
   * translates to its standby original. Without it, copies count as unmirrored.
   */
  counterpartMap?: OffsetMapStore;
  stateStore: StateStore;
  selectTopic: (topic: string) => boolean;
  selectGroup: (group: string) => boolean;
  logger: Logger;
  clock?: () => number;
  /** What the caller already knows of each partition's latest entry (a failover's fence); else read once each. */
  mirrored?: MirroredOf;
}

export interface CheckpointResult {
  at: number;
  /**
   * Why nothing was done, when the pair is not MIRRORING (a failover or failback is under way or done):
   * no group was read or moved and no checkpoint written. Not an error: the schedule keeps firing.
   */
  skipped?: string;
  /** The control state the checkpoint ran in (or was skipped in). */
  control?: { state: ControlState['state']; epoch: number; activeCluster: string };
  /**
   * Selected primary topics the standby does not have: their groups were not checkpointed (a failover
   * could not move them); their records count as unmirrored in the observations.
   */
  notOnStandby: string[];
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
 * `counterpartMap` (the standby -> primary map): after a failback the primary holds kdr's copies of
 * standby records, which the forward map skips; an offset goes to whichever comes first on the primary at
 * or after it, the first forward-mirrored record or the first copy (then to the copy's standby original).
 */
export async function translateAll<T extends TopicPartition & { offset: number }>(
  offsetMap: OffsetMapStore,
  items: T[],
  options: {
    concurrency?: number;
    topicIds?: Map<string, string>;
    counterpartMap?: OffsetMapStore;
    mirrored?: MirroredOf;
  } = {},
): Promise<(T & { standbyOffset: number | null })[]> {
  const concurrency = options.concurrency ?? 8;
  const byPartition = groupBy(items, (item) => `${item.topic}\u0000${item.partition}`);
  const partitions = [...byPartition.values()].map((g) => ({
    topic: g[0]!.topic,
    partition: g[0]!.partition,
  }));
  await Promise.all([
    offsetMap.prefetchHeads?.(partitions),
    options.counterpartMap?.prefetchHeads?.(partitions),
  ]);
  const limit = pLimit(concurrency);
  const translated = await Promise.all(
    [...byPartition.values()].map((group) =>
      limit(async () => {
        const offsets = group.map((g) => g.offset);
        const tp = { topic: group[0]!.topic, partition: group[0]!.partition };
        const liveId = options.topicIds?.get(tp.topic) ?? null;
        const { generation, latest } = options.mirrored
          ? await options.mirrored(tp, liveId)
          : { ...(await liveGeneration(offsetMap, tp, liveId)), latest: undefined };
        const [entries, copies] = await Promise.all([
          // With `mirrored`, no latest entry means none at all: nothing to query.
          generation === null || (options.mirrored && !latest)
            ? []
            : entriesFor(offsetMap, { ...tp, generation }, offsets, latest),
          options.counterpartMap
            ? copiesAtOrAfter(options.counterpartMap, tp, liveId, offsets)
            : new Map<number, OffsetMapEntry | undefined>(),
        ]);
        return group.map((item) => {
          const entry = entries.find((e) => e.lastSource >= item.offset);
          if (options.counterpartMap) {
            const t = translateThroughCopies(entry, copies.get(item.offset), item.offset);
            return { ...item, standbyOffset: t ? t.standbyOffset : null };
          }
          const t = translateCommitted(entry, item.offset, null);
          return { ...item, standbyOffset: t.kind === 'exact' ? t.standbyOffset : null };
        });
      }),
    ),
  );
  return translated.flat();
}

/** A partition's live generation (null: none describes the live topic) and its latest entry in it. */
export type MirroredOf = (
  tp: TopicPartition,
  liveTopicId: string | null,
) => Promise<{ generation: number | null; latest: OffsetMapEntry | undefined }>;

/** MirroredOf read once per partition and topic id (a checkpoint's translation and observation share it). */
export function mirroredOnce(offsetMap: OffsetMapStore): MirroredOf {
  const read = new Map<string, ReturnType<MirroredOf>>();
  return (tp, liveTopicId) => {
    const key = `${tp.topic}\u0000${tp.partition}\u0000${liveTopicId ?? ''}`;
    let found = read.get(key);
    if (!found) {
      found = liveGeneration(offsetMap, tp, liveTopicId).then(async ({ generation }) => ({
        generation,
        latest: generation === null ? undefined : await offsetMap.latest({ ...tp, generation }),
      }));
      read.set(key, found);
    }
    return found;
  };
}

/**
 * The entries that translate `offsets`. Entries cover consecutive ranges of the log, so the latest one
 * is the covering entry of every offset from its first run through its last, and beyond it nothing is
 * mirrored: only offsets before its first run need the range Query (consumers that lag).
 */
async function entriesFor(
  offsetMap: OffsetMapStore,
  tp: TopicPartition & { generation: number },
  offsets: number[],
  latest: OffsetMapEntry | undefined,
): Promise<OffsetMapEntry[]> {
  if (!latest) return offsetMap.coveringRange(tp, Math.min(...offsets), Math.max(...offsets));
  const start = latest.runs[0]?.sourceStart ?? latest.lastSource;
  const before = offsets.filter((o) => o < start);
  if (before.length === 0) return [latest];
  const range = await offsetMap.coveringRange(tp, Math.min(...before), Math.max(...before));
  // Entries written after `latest` was read are left out: the translations stay those of one moment.
  return [...range.filter((e) => e.lastSource < latest.lastSource), latest];
}

/**
 * The reverse map's generation that describes the live primary topic: the reverse mirror wrote into the
 * primary topic its head names; a primary topic re-created since holds no copies (null).
 */
export async function copyGeneration(
  counterpart: OffsetMapStore,
  tp: TopicPartition,
  primaryTopicId: string | null,
): Promise<number | null> {
  const head = await counterpart.head(tp, { cached: true });
  if (head?.standbyTopicId && primaryTopicId && head.standbyTopicId !== primaryTopicId) return null;
  return head?.generation ?? 1;
}

/**
 * For each primary offset, the first reverse entry whose last target (primary) offset is >= it: one
 * Query per distinct entry needed, none past the last copy.
 */
async function copiesAtOrAfter(
  counterpart: OffsetMapStore,
  tp: TopicPartition,
  primaryTopicId: string | null,
  offsets: number[],
): Promise<Map<number, OffsetMapEntry | undefined>> {
  const found = new Map<number, OffsetMapEntry | undefined>();
  // No head: nothing was ever copied back to this partition, so there is nothing to look up.
  if (!(await counterpart.head(tp, { cached: true }))) return found;
  const generation = await copyGeneration(counterpart, tp, primaryTopicId);
  if (generation === null) return found;
  let entry: OffsetMapEntry | undefined;
  for (const offset of [...new Set(offsets)].sort((a, b) => a - b)) {
    if (!entry || entry.lastStandby < offset) {
      entry = await counterpart.coveringStandby({ ...tp, generation }, offset);
      if (!entry) break;
    }
    found.set(offset, entry);
  }
  return found;
}

/** The ranges of [from, to) on the primary that hold kdr's copies of standby records (reverse map). */
export async function copiedRangesOf(
  counterpart: OffsetMapStore,
  tp: TopicPartition,
  primaryTopicId: string | null,
  from: number,
  to: number,
): Promise<{ from: number; to: number }[]> {
  if (!(await counterpart.head(tp, { cached: true }))) return [];
  const generation = await copyGeneration(counterpart, tp, primaryTopicId);
  if (generation === null) return [];
  const first = await counterpart.coveringStandby({ ...tp, generation }, from);
  if (!first) return [];
  const entries = await counterpart.coveringRange(
    { ...tp, generation },
    first.lastSource,
    Number.MAX_SAFE_INTEGER,
  );
  return copiedRanges(entries, from, to);
}

/** Whether checkpoints may run in this state: only while MIRRORING, or as a failover's own last one. */
export function checkpointAllowed(control: ControlState, during?: 'failover'): boolean {
  return control.state === 'MIRRORING' || (during === 'failover' && control.state === 'FAILING_OVER');
}

function skippedBecause(control: ControlState, during?: 'failover'): string {
  return `pair ${control.pair} is ${control.state} (epoch ${control.epoch}): checkpoints run only while MIRRORING${
    during === 'failover' ? " or FAILING_OVER (a failover's own checkpoint)" : ''
  }`;
}

export interface CheckpointOptions {
  commitOnStandby: boolean;
  mirrorGroups: string[];
  /**
   * 'failover': the failover's own final checkpoint, which runs while the pair is FAILING_OVER. Otherwise
   * a checkpoint runs only while MIRRORING, and is skipped (result.skipped) in any other state.
   */
  during?: 'failover';
}

export async function runCheckpoint(
  deps: CheckpointDeps,
  options: CheckpointOptions,
): Promise<CheckpointResult> {
  const clock = deps.clock ?? Date.now;
  // During a failover or after it, the primary's groups are stale or in another region's hands: their
  // translations must not overwrite the checkpoints a failover uses, nor live standby groups.
  const control = await deps.stateStore.getControl();
  const state = { state: control.state, epoch: control.epoch, activeCluster: control.activeCluster };
  const skip = (c: ControlState): CheckpointResult => {
    const skipped = skippedBecause(c, options.during);
    deps.logger.info('checkpoint skipped', { state: c.state, epoch: c.epoch });
    return {
      at: clock(),
      skipped,
      control: { state: c.state, epoch: c.epoch, activeCluster: c.activeCluster },
      groups: 0,
      checkpoints: [],
      observations: [],
      gaps: [],
      notOnStandby: [],
      committedOnStandby: [],
      warnings: [],
    };
  };
  if (!checkpointAllowed(control, options.during)) return skip(control);
  const selected = await mirroredTopics(deps);
  const warnings: string[] = [];
  // Groups only on topics the standby has: a failover moves a group to a standby position, and a topic
  // the standby lacks (never mirrored, or deleted there) has none. One metadata call.
  const onStandby = await deps.standbyAdmin.listTopics().then(
    (names) => new Set(names),
    (error) => {
      warnings.push(
        `could not list the standby's topics (${describeError(error)}): groups on every selected topic were checkpointed`,
      );
      return undefined;
    },
  );
  const notOnStandby = onStandby ? selected.filter((t) => !onStandby.has(t)) : [];
  const groups = (await deps.primaryAdmin.listGroups()).filter(
    (g) => deps.selectGroup(g) && !isMirrorGroup(g, options.mirrorGroups),
  );
  // Groups, translations and partitions in parallel (bounded): a failover's RTO includes this.
  const limit = pLimit(16);
  const perGroup = await Promise.all(
    groups.map((group) =>
      limit(async () => {
        const committed = await deps.primaryAdmin.committedOffsets(group, selected);
        const at = clock();
        return committed.map((c) => ({ group, ...c, at }));
      }),
    ),
  );
  const missing = new Set(notOnStandby);
  const uncheckpointed = new Map<string, Set<string>>();
  for (const c of perGroup.flat())
    if (missing.has(c.topic))
      uncheckpointed.set(c.topic, (uncheckpointed.get(c.topic) ?? new Set()).add(c.group));
  for (const [topic, names] of uncheckpointed)
    warnings.push(
      `topic ${topic} does not exist on the standby: groups ${[...names].sort().join(', ')} were not checkpointed on it (is it mirrored?)`,
    );
  const topicIds = (await deps.primaryAdmin.topicIds?.(selected)) ?? new Map<string, string>();
  const partitionOffsets = await Promise.all(
    selected.map(async (topic) => ({ topic, offsets: await deps.primaryReader.offsets(topic) })),
  );
  // Every partition's head in a few batches, and its latest entry once: translation and observation share them.
  const partitions = partitionOffsets.flatMap(({ topic, offsets }) =>
    offsets.map((o) => ({ topic, partition: o.partition })),
  );
  await Promise.all([
    deps.offsetMap.prefetchHeads?.(partitions),
    deps.counterpartMap?.prefetchHeads?.(partitions),
  ]);
  const mirrored = deps.mirrored ?? mirroredOnce(deps.offsetMap);
  const checkpoints: GroupCheckpoint[] = (
    await translateAll(
      deps.offsetMap,
      perGroup.flat().filter((c) => !missing.has(c.topic)),
      { topicIds, mirrored, ...(deps.counterpartMap ? { counterpartMap: deps.counterpartMap } : {}) },
    )
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
  const observations: PartitionObservation[] = await Promise.all(
    partitionOffsets.flatMap(({ topic, offsets }) =>
      offsets.map((o) =>
        limit(() =>
          observe(deps, { topic, partition: o.partition }, o, {
            previous,
            clock,
            liveTopicId: topicIds.get(topic) ?? null,
            mirrored,
          }),
        ),
      ),
    ),
  );
  const gaps = observations.flatMap((o) => (o.gap ? [o.gap] : []));
  for (const gap of gaps) if (!gap.markersOnly) deps.logger.warn(describeGap(gap, 'the primary'), { gap });
  // Read again: a failover may have begun while this one read the primary (narrows, does not close, the
  // window; the failover's own checkpoint comes after and overwrites this one).
  const now = await deps.stateStore.getControl();
  if (now.epoch !== control.epoch || !checkpointAllowed(now, options.during)) return skip(now);
  const at = clock();
  await deps.stateStore.putCheckpoints({ groups: checkpoints, observations, at });

  const committedOnStandby: string[] = [];
  if (options.commitOnStandby) {
    for (const [group, list] of groupBy(checkpoints, (c) => c.group)) {
      const offsets = list
        .filter((c) => c.standbyOffset !== null)
        .map((c) => ({ topic: c.topic, partition: c.partition, offset: c.standbyOffset! }));
      if (offsets.length === 0) continue;
      // Before each commit: a failover that began meanwhile makes the standby's groups live ones.
      const current = await deps.stateStore.getControl();
      if (current.epoch !== control.epoch || current.state !== 'MIRRORING') {
        warnings.push(
          `pair ${current.pair} moved to ${current.state} (epoch ${current.epoch}) while committing on the standby: the remaining groups were left alone`,
        );
        break;
      }
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
    control: state,
    groups: new Set(checkpoints.map((c) => c.group)).size,
    checkpoints,
    observations,
    gaps,
    notOnStandby,
    committedOnStandby,
    warnings,
  };
}

/** Fetches a scan of copies may take per partition and checkpoint (the next checkpoint goes on from it). */
const COPY_SCAN_FETCHES = 16;

/**
 * What [from, end) of a primary partition holds, read from `from` on: the timestamp of the first record to
 * mirror, and how far from `from` it holds nothing to mirror (transaction markers, aborted records and,
 * with the reverse map, kdr's copies of standby records: skipped by the map, never read).
 */
async function scanUnmirrored(
  deps: Pick<CheckpointDeps, 'primaryReader' | 'counterpartMap'>,
  tp: TopicPartition,
  from: number,
  end: number,
  liveTopicId: string | null,
  resume: () => Promise<number | undefined>,
): Promise<{ firstTimestamp: number | null; nothingTo: number; copies: boolean }> {
  const copies = deps.counterpartMap
    ? await copiedRangesOf(deps.counterpartMap, tp, liveTopicId, from, end)
    : [];
  if (copies.length === 0) {
    const fetched = await deps.primaryReader.fetch(tp, from, { maxBytes: 64 * 1024 });
    return {
      firstTimestamp: fetched.records[0]?.timestamp ?? null,
      nothingTo: fetched.records.length === 0 ? Math.min(fetched.nextOffset, fetched.lastStable) : from,
      copies: false,
    };
  }
  const copied = (o: number) => copies.find((r) => r.from <= o && o < r.to);
  // Where an earlier checkpoint's scan got to (a long range of copies takes several).
  let cursor = Math.max(from, Math.min((await resume()) ?? from, end));
  for (let fetches = 0; ; ) {
    for (let r = copied(cursor); r; r = copied(cursor)) cursor = r.to;
    if (cursor >= end || fetches >= COPY_SCAN_FETCHES)
      return { firstTimestamp: null, nothingTo: cursor, copies: true };
    const fetched = await deps.primaryReader.fetch(tp, cursor, {
      maxBytes: fetches++ === 0 ? 64 * 1024 : 1024 * 1024,
    });
    const first = fetched.records.find((r) => r.offset >= cursor && r.offset < end && !copied(r.offset));
    if (first) return { firstTimestamp: first.timestamp, nothingTo: first.offset, copies: true };
    const next = Math.min(fetched.nextOffset, end);
    if (next <= cursor) return { firstTimestamp: null, nothingTo: cursor, copies: true };
    cursor = next;
  }
}

/**
 * What a primary partition looks like now: its end, the last mirrored offset, the timestamp of the first
 * record not mirrored, and, when log start is past the last mirrored offset, the gap: what was deleted
 * there can never be mirrored, and the reads start at log start instead of failing. kdr's own copies of
 * standby records (after a failback) are never mirrored and are not lag: when nothing but copies and
 * markers follows the last mirrored record, endOffset is where they start.
 */
async function observe(
  deps: Pick<CheckpointDeps, 'primaryReader' | 'offsetMap' | 'counterpartMap'>,
  tp: TopicPartition,
  offsets: PartitionOffsets,
  context: {
    previous: () => Promise<Map<string, PartitionObservation>>;
    clock: () => number;
    liveTopicId: string | null;
    mirrored: MirroredOf;
  },
): Promise<PartitionObservation> {
  const { previous, clock, liveTopicId } = context;
  // Of the generation that describes the live topic: a re-created topic has nothing mirrored yet.
  const { latest } = await context.mirrored(tp, liveTopicId);
  const lastMirrored = latest?.lastSource ?? null;
  let { logStart, lastStable } = offsets;
  let end = lastStable;
  // Where the unmirrored records start: nothing mirrored yet means from the log start, and no gap.
  let expected = lastMirrored === null ? logStart : lastMirrored + 1;
  let firstUnmirroredTimestamp: number | null = null;
  // How far from `expected` the partition is known to hold no record to mirror.
  let clean: number | undefined = expected;
  let gap: LogStartGap | undefined;
  // An earlier observation of the same mirrored state proved [expected, markersOnlyTo) held nothing to mirror.
  const resume = async () => {
    const o = (await previous()).get(partitionKey(tp));
    return o && o.lastMirrored === lastMirrored && (o.sourceTopicId ?? null) === liveTopicId
      ? o.markersOnlyTo
      : undefined;
  };
  for (let moved = 0; ; moved++) {
    expected = lastMirrored === null ? logStart : lastMirrored + 1;
    gap = gapBelow(tp, expected, logStart, clock());
    clean = expected;
    end = lastStable;
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
      const scan = await scanUnmirrored(deps, tp, from, lastStable, liveTopicId, resume);
      firstUnmirroredTimestamp = scan.firstTimestamp;
      if (clean !== undefined && clean >= from) clean = Math.max(clean, scan.nothingTo);
      // Nothing left to mirror but copies (and markers): the standby has everything it should get.
      if (scan.copies && scan.nothingTo >= lastStable) end = from;
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
    endOffset: end,
    lastMirrored,
    firstUnmirroredTimestamp,
    observedAt: clock(),
    ...(gap ? { gap } : {}),
    ...(lastMirrored !== null && clean !== undefined && clean > expected ? { markersOnlyTo: clean } : {}),
  };
}
