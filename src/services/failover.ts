import { hostname } from 'node:os';
import type { ControlState } from '../core/control.ts';
import { describeConflict } from '../core/control.ts';
import type { SourceRecord, TopicPartition } from '../core/records.ts';
import { isInternalTopic } from '../core/topicSync.ts';
import { describeError, isKdrError, KdrError, StateError, TimeoutError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GroupAdmin, PartitionReader, TopicAdmin, TransactionalWriterFactory } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import type { GroupCheckpoint, PartitionObservation, StateStore } from '../ports/stateStore.ts';
import {
  describeGap,
  GapLog,
  gapBelow,
  type LogStartGap,
  logStartOf,
  previousObservations,
  readFromLogStart,
  runCheckpoint,
  translateAll,
  withProof,
} from './checkpoint.ts';
import { liveGeneration } from './generations.ts';
import { caughtUp, type LagDeps, liveLatest } from './lag.ts';
import type { MirrorEngine } from './mirror.ts';

/**
 * Failover: promote the standby. Exactly one of several concurrent invocations proceeds (the control
 * state's conditional epoch), the mirror is stopped and fenced, and every consumer group is moved to the
 * standby offset of the record it would have read next.
 *
 * planned:   the primary is up. Drain the mirror until the standby has every record the primary has
 *            (bounded wait), take a final checkpoint, commit the translated offsets on the standby,
 *            stop and fence the mirror, flip. Lag not reaching zero in time aborts back to MIRRORING.
 * unplanned: the primary is gone (or the operator says so). Never touch it: fence the mirror on the
 *            standby, move groups from the latest checkpoints, report the RPO from the last observation.
 */

export type FailoverMode = 'planned' | 'unplanned';

export interface FailoverDeps {
  pair: string;
  primaryAlias: string;
  standbyAlias: string;
  stateStore: StateStore;
  primaryAdmin: TopicAdmin & GroupAdmin;
  standbyAdmin: TopicAdmin & GroupAdmin;
  primaryReader: PartitionReader;
  standbyReader: PartitionReader;
  offsetMap: OffsetMapStore;
  /** The reverse map (standby -> primary): proves which primary records are copies of the standby's. */
  counterpartMap?: OffsetMapStore;
  /** The forward engine (its guard lets it write while FAILING_OVER). */
  engine: MirrorEngine;
  /** The forward writers: opening one fences the partition's mirror. */
  writers: TransactionalWriterFactory;
  selectTopic: (topic: string) => boolean;
  selectGroup: (group: string) => boolean;
  mirrorGroups: string[];
  /** Disables whatever feeds the mirror (the Lambda event source mappings); returns what it did. */
  stopMirror?: () => Promise<string[]>;
  logger: Logger;
  owner?: string;
  clock?: () => number;
}

export interface PartitionRpo {
  topic: string;
  partition: number;
  records: number;
  seconds: number;
  primaryEndOffset: number;
  lastMirrored: number | null;
  observedAt: number;
}

export interface GroupMove {
  topic: string;
  partition: number;
  sourceOffset: number;
  standbyOffset: number;
  /** False when the committed position was beyond what was mirrored: the group starts at the standby end. */
  exact: boolean;
}

export interface FailoverReport {
  pair: string;
  epoch: number;
  from: string;
  to: string;
  mode: FailoverMode;
  startedAt: string;
  finishedAt: string;
  rtoMs: number;
  /**
   * `gaps`: ranges the primary deleted (retention, DeleteRecords) before they were mirrored. They are not
   * in `records`: they are gone from both clusters; each gap's count bounds the records it held.
   */
  rpo: { records: number; seconds: number; partitions: PartitionRpo[]; gaps: LogStartGap[] };
  groups: Record<string, GroupMove[]>;
  mirrorStopped: string[];
  /** Milliseconds per phase (drain, checkpoint, groups, fence). */
  timings: Record<string, number>;
  warnings: string[];
}

export function defaultOwner(): string {
  return `${hostname()}/${process.pid}`;
}

/** Partitions of the mirrored topics, from a cluster's metadata. */
export async function mirroredPartitions(
  admin: TopicAdmin,
  select: (topic: string) => boolean,
): Promise<TopicPartition[]> {
  const names = (await admin.listTopics()).filter((name) => !isInternalTopic(name) && select(name));
  const counts = await admin.partitionCounts(names);
  return [...counts]
    .flatMap(([topic, count]) => Array.from({ length: count }, (_, partition) => ({ topic, partition })))
    .sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
}

/**
 * Copies what the mirror has not yet copied, partition by partition, until caught up or out of time.
 * `floor` (failback) is where the source partition's records for this direction can start when the map
 * has nothing yet. Reads start at the partition's current log start: what it passed before being mirrored
 * is returned as a gap, not retried.
 */
/** The drain's optional helpers, as caughtUp takes them. */
const optional = (deps: { counterpartMap?: OffsetMapStore; sourceAdmin?: LagDeps['sourceAdmin'] }) => ({
  ...(deps.counterpartMap ? { counterpartMap: deps.counterpartMap } : {}),
  ...(deps.sourceAdmin ? { sourceAdmin: deps.sourceAdmin } : {}),
});

export async function drain(
  deps: {
    engine: Pick<MirrorEngine, 'mirrorBatch'>;
    reader: PartitionReader;
    offsetMap: OffsetMapStore;
    /** The other direction's map: proves which records are copies of the target's (never due). */
    counterpartMap?: OffsetMapStore;
    /** The source's topic ids: a topic re-created since it was mirrored has nothing mirrored yet. */
    sourceAdmin?: { topicIds(topics: string[]): Promise<Map<string, string>> };
    route: { sourceAlias: string; targetAlias: string };
    floor?: (tp: TopicPartition) => Promise<number | undefined>;
  },
  partitions: TopicPartition[],
  deadline: number,
  clock: () => number,
): Promise<{
  pending: { tp: TopicPartition; end: number; lastMirrored: number | null }[];
  drained: number;
  gaps: LogStartGap[];
}> {
  let drained = 0;
  const gaps = new GapLog();
  for (;;) {
    const pending: {
      tp: TopicPartition;
      end: number;
      from: number;
      logStart: number;
      lastMirrored: number | null;
    }[] = [];
    const byTopic = new Map<string, number[]>();
    for (const tp of partitions) byTopic.set(tp.topic, [...(byTopic.get(tp.topic) ?? []), tp.partition]);
    for (const [topic, ids] of byTopic) {
      for (const o of await deps.reader.offsets(topic, ids)) {
        const tp = { topic, partition: o.partition };
        const floor = await deps.floor?.(tp);
        const latest = await liveLatest(
          { offsetMap: deps.offsetMap, sourceReader: deps.reader, ...optional(deps) },
          tp,
        );
        // Where this direction's unmirrored records start (unknown: from the log start, no gap).
        const expected = latest ? latest.lastSource + 1 : floor;
        if (expected !== undefined) gaps.add(gapBelow(tp, expected, o.logStart, clock()));
        const from = Math.max(expected ?? o.logStart, o.logStart);
        const route = { ...deps.route, ...(floor !== undefined ? { floor } : {}) };
        let done: boolean;
        try {
          done = await caughtUp(
            { offsetMap: deps.offsetMap, sourceReader: deps.reader, ...optional(deps) },
            tp,
            o.lastStable,
            o.logStart,
            route,
          );
        } catch (error) {
          // The log start passed the read since the offsets were taken: the copy below starts from it.
          const now = await logStartOf(deps.reader, tp);
          if (now === undefined || now <= from) throw error;
          done = false;
        }
        if (done) continue;
        pending.push({
          tp,
          end: o.lastStable,
          from,
          logStart: o.logStart,
          lastMirrored: latest?.lastSource ?? null,
        });
      }
    }
    if (pending.length === 0 || clock() > deadline)
      return {
        pending: pending.map(({ tp, end, lastMirrored }) => ({ tp, end, lastMirrored })),
        drained,
        gaps: gaps.list(),
      };
    for (const p of pending) {
      let batch: SourceRecord[] = [];
      for await (const records of readFromLogStart(deps.reader, p.tp, p.from, p.end, {
        logStart: p.logStart,
        onGap: (gap) => gaps.add(gap),
        clock,
      })) {
        batch.push(...records);
        if (batch.length >= 5000) {
          drained += (await deps.engine.mirrorBatch(p.tp, batch)).mirrored;
          batch = [];
        }
        if (clock() > deadline) break;
      }
      if (batch.length > 0) drained += (await deps.engine.mirrorBatch(p.tp, batch)).mirrored;
    }
  }
}

async function fence(writers: TransactionalWriterFactory, partitions: TopicPartition[]): Promise<void> {
  for (const tp of partitions) {
    const writer = await writers.open(tp);
    await writer.close();
  }
}

/** Commits each group's translated offsets on the standby; a group with running consumers is skipped. */
async function moveGroups(
  admin: GroupAdmin,
  moves: Map<string, GroupMove[]>,
  warnings: string[],
): Promise<Record<string, GroupMove[]>> {
  const moved: Record<string, GroupMove[]> = {};
  for (const [group, list] of moves) {
    const state = await admin.groupState(group);
    if (state !== 'Empty' && state !== 'Dead') {
      warnings.push(
        `group ${group} has running consumers on the standby (${state}); its offsets were not moved`,
      );
      continue;
    }
    await admin.commitOffsets(
      group,
      list.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.standbyOffset })),
    );
    moved[group] = list;
  }
  return moved;
}

function rpoFrom(
  observations: PartitionObservation[],
  lastMirrored: Map<string, number | null>,
): PartitionRpo[] {
  return observations.map((o) => {
    const mirrored = lastMirrored.get(`${o.topic}-${o.partition}`) ?? o.lastMirrored;
    let next = mirrored === null ? 0 : mirrored + 1;
    // Deleted before it was mirrored (a gap, reported on its own), or seen to hold only markers: not lost
    // by failing over.
    if (o.gap) next = Math.max(next, o.gap.to);
    if (
      o.markersOnlyTo !== undefined &&
      o.lastMirrored !== null &&
      mirrored !== null &&
      mirrored >= o.lastMirrored
    )
      next = Math.max(next, o.markersOnlyTo);
    const records = Math.max(0, o.endOffset - next);
    const seconds =
      records > 0 && o.firstUnmirroredTimestamp !== null
        ? Math.max(0, (o.observedAt - o.firstUnmirroredTimestamp) / 1000)
        : 0;
    return {
      topic: o.topic,
      partition: o.partition,
      records,
      seconds,
      primaryEndOffset: o.endOffset,
      lastMirrored: mirrored,
      observedAt: o.observedAt,
    };
  });
}

export async function failover(
  deps: FailoverDeps,
  options: { mode: FailoverMode; timeoutMs: number },
): Promise<FailoverReport> {
  const clock = deps.clock ?? Date.now;
  const owner = deps.owner ?? defaultOwner();
  const started = clock();
  const log = deps.logger.child({ pair: deps.pair, operation: 'failover', mode: options.mode });
  const control = await deps.stateStore.getControl();
  if (control.state !== 'MIRRORING' || control.activeCluster !== deps.primaryAlias) {
    throw new StateError('STATE_CONFLICT', describeConflict(control, 'FAILING_OVER'), {
      details: { pair: deps.pair, epoch: control.epoch, state: control.state },
    });
  }
  const operation = { kind: 'failover' as const, mode: options.mode, startedAt: started, owner };
  const failing = await deps.stateStore.transition(control.epoch, {
    state: 'FAILING_OVER',
    activeCluster: deps.primaryAlias,
    operation,
    owner,
    reason: `${options.mode} failover`,
  });
  log.info('failing over', { epoch: failing.epoch });
  const warnings: string[] = [];
  let current: ControlState = failing;
  // Where the RTO goes, phase by phase (reported).
  const timings: Record<string, number> = {};
  let lastMark = clock();
  const mark = (phase: string) => {
    const now = clock();
    if (phase !== 'start') timings[`${phase}Ms`] = now - lastMark;
    lastMark = now;
  };
  try {
    let partitions: TopicPartition[];
    let moves = new Map<string, GroupMove[]>();
    let rpo: PartitionRpo[];
    const gaps = new GapLog();
    const ends = new Map<string, Promise<number>>();
    const standbyEnd = (tp: TopicPartition) => {
      const key = `${tp.topic}-${tp.partition}`;
      if (!ends.has(key))
        ends.set(
          key,
          deps.standbyReader.offsets(tp.topic, [tp.partition]).then((o) => o[0]!.lastStable),
        );
      return ends.get(key)!;
    };
    // `c.standbyOffset` is the translation (null: beyond what is mirrored).
    const addMove = async (c: GroupCheckpoint, fallbackToEnd: boolean) => {
      let standbyOffset = c.standbyOffset;
      const exact = standbyOffset !== null;
      if (standbyOffset === null) {
        standbyOffset = await standbyEnd(c);
        if (fallbackToEnd) {
          warnings.push(
            `group ${c.group}: ${c.topic}-${c.partition} committed ${c.sourceOffset}, beyond what was mirrored; it starts at the standby end ${standbyOffset}`,
          );
        }
      }
      moves.set(c.group, [
        ...(moves.get(c.group) ?? []),
        { topic: c.topic, partition: c.partition, sourceOffset: c.sourceOffset, standbyOffset, exact },
      ]);
    };

    if (options.mode === 'planned') {
      partitions = await mirroredPartitions(deps.primaryAdmin, deps.selectTopic).catch((error) => {
        throw new KdrError(
          'KAFKA_UNAVAILABLE',
          `the primary is not reachable for a planned failover (use --unplanned): ${describeError(error)}`,
          {
            cause: error,
          },
        );
      });
      mark('start');
      const {
        pending,
        drained,
        gaps: drainGaps,
      } = await drain(
        {
          engine: deps.engine,
          reader: deps.primaryReader,
          offsetMap: deps.offsetMap,
          ...(deps.counterpartMap ? { counterpartMap: deps.counterpartMap } : {}),
          ...(deps.primaryAdmin.topicIds
            ? { sourceAdmin: { topicIds: (t: string[]) => deps.primaryAdmin.topicIds!(t) } }
            : {}),
          route: { sourceAlias: deps.primaryAlias, targetAlias: deps.standbyAlias },
        },
        partitions,
        started + options.timeoutMs,
        clock,
      );
      log.info('drained the mirror', { records: drained });
      // The last checkpoint can prove that a gap held only transaction markers.
      const earlier = drainGaps.length > 0 ? await previousObservations(deps.stateStore, log) : new Map();
      for (const gap of drainGaps) gaps.add(withProof(gap, earlier));
      if (pending.length > 0) {
        const behind = pending.map(
          (p) => `${p.tp.topic}-${p.tp.partition} (last mirrored ${p.lastMirrored ?? 'none'}, end ${p.end})`,
        );
        throw new TimeoutError(
          `mirror lag did not reach zero within ${options.timeoutMs / 1000} s on ${pending.length} partition(s): ${behind.slice(0, 10).join(', ')}`,
          { details: { pending: pending.length } },
        );
      }
      mark('drain');
      const checkpoint = await runCheckpoint(
        {
          primaryAdmin: deps.primaryAdmin,
          standbyAdmin: deps.standbyAdmin,
          primaryReader: deps.primaryReader,
          offsetMap: deps.offsetMap,
          stateStore: deps.stateStore,
          selectTopic: deps.selectTopic,
          selectGroup: deps.selectGroup,
          logger: log,
          clock,
        },
        { commitOnStandby: false, mirrorGroups: deps.mirrorGroups },
      );
      // Lag is zero: a position beyond the last mirrored record is the end of the partition on both sides.
      for (const c of checkpoint.checkpoints) await addMove(c, false);
      for (const gap of checkpoint.gaps) gaps.add(gap);
      rpo = rpoFrom(checkpoint.observations, new Map());
    } else {
      partitions = await mirroredPartitions(deps.standbyAdmin, deps.selectTopic);
      const set = await deps.stateStore.getCheckpoints();
      if (set.at === null) warnings.push('no checkpoint was ever taken: consumer groups cannot be moved');
      // Translated again: the mirror may have copied more since the checkpoint.
      // Each checkpoint is translated in the topic generation it was taken in (the primary may be gone).
      const checkpointedIds = new Map<string, string>();
      for (const c of set.groups) if (c.sourceTopicId) checkpointedIds.set(c.topic, c.sourceTopicId);
      const again = await translateAll(
        deps.offsetMap,
        set.groups.map((c) => ({ ...c, offset: c.sourceOffset })),
        { topicIds: checkpointedIds },
      );
      for (const c of again) await addMove(c, true);
      const mirrored = new Map<string, number | null>();
      // Each observation in the topic generation it was taken in: a re-created topic not yet mirrored has
      // nothing mirrored, whatever the old topic had.
      for (const o of set.observations) {
        const { generation } = await liveGeneration(deps.offsetMap, o, o.sourceTopicId ?? null);
        const latest = generation === null ? undefined : await deps.offsetMap.latest({ ...o, generation });
        mirrored.set(`${o.topic}-${o.partition}`, latest?.lastSource ?? null);
      }
      rpo = rpoFrom(set.observations, mirrored);
      for (const o of set.observations) gaps.add(o.gap);
      if (set.at !== null)
        warnings.push(`RPO from the primary as last observed at ${new Date(set.at).toISOString()}`);
    }

    mark(options.mode === 'planned' ? 'checkpoint' : 'checkpoints');
    const groups = await moveGroups(deps.standbyAdmin, moves, warnings);
    mark('groups');
    moves = new Map();
    current = await deps.stateStore.transition(failing.epoch, {
      state: 'FAILED_OVER',
      activeCluster: deps.standbyAlias,
      operation,
      owner,
      reason: `${options.mode} failover done`,
    });
    // No mirror passes its guard any more; fencing aborts a transaction one had begun before the flip.
    await deps.engine.close();
    await fence(deps.writers, partitions);
    mark('fence');
    const mirrorStopped = deps.stopMirror
      ? await deps.stopMirror().catch((error) => {
          warnings.push(`could not stop the mirror's event sources: ${describeError(error)}`);
          return [];
        })
      : [];
    const finished = clock();
    const report: FailoverReport = {
      pair: deps.pair,
      epoch: current.epoch,
      from: deps.primaryAlias,
      to: deps.standbyAlias,
      mode: options.mode,
      startedAt: new Date(started).toISOString(),
      finishedAt: new Date(finished).toISOString(),
      rtoMs: finished - started,
      rpo: {
        records: rpo.reduce((n, p) => n + p.records, 0),
        seconds: Math.max(0, ...rpo.map((p) => p.seconds)),
        partitions: rpo,
        gaps: gaps.list(),
      },
      groups,
      mirrorStopped,
      timings,
      warnings,
    };
    for (const gap of report.rpo.gaps)
      if (!gap.markersOnly) log.warn(describeGap(gap, deps.primaryAlias), { gap });
    log.info('failed over', { epoch: report.epoch, rtoMs: report.rtoMs, rpoRecords: report.rpo.records });
    return report;
  } catch (error) {
    if (current.epoch === failing.epoch) {
      await deps.stateStore
        .transition(failing.epoch, {
          state: 'MIRRORING',
          activeCluster: deps.primaryAlias,
          operation,
          owner,
          reason: `failover aborted: ${describeError(error)}`,
        })
        .catch((abortError) =>
          log.error('could not return the pair to MIRRORING', { error: describeError(abortError) }),
        );
      const message = `failover aborted, pair ${deps.pair} is back to MIRRORING: ${describeError(error)}`;
      throw isKdrError(error)
        ? new KdrError(error.code, message, { cause: error, details: error.details })
        : new KdrError('KAFKA_REQUEST_FAILED', message, { cause: error });
    }
    throw error;
  }
}
