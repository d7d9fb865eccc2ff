import pLimit from 'p-limit';
import { describeConflict } from '../core/control.ts';
import type { OffsetMapEntry } from '../core/offsetMap.ts';
import { type OperationPhase, phaseReached } from '../core/operation.ts';
import { groupBy, partitionKey, type SourceRecord, type TopicPartition } from '../core/records.ts';
import { isInternalTopic } from '../core/topicSync.ts';
import { describeError, KdrError, ProducerFencedError, StateError, TimeoutError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GroupAdmin, PartitionReader, TopicAdmin, TransactionalWriterFactory } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import type {
  CheckpointSet,
  GroupCheckpoint,
  PartitionObservation,
  StateStore,
} from '../ports/stateStore.ts';
import {
  describeGap,
  GapLog,
  gapBelow,
  type LogStartGap,
  logStartOf,
  type MirroredOf,
  mirroredOnce,
  previousObservations,
  readFromLogStart,
  runCheckpoint,
  translateAll,
  withProof,
} from './checkpoint.ts';
import { liveGeneration } from './generations.ts';
import { caughtUp, type LagDeps, liveLatest } from './lag.ts';
import type { MirrorEngine } from './mirror.ts';
import {
  type AbortReport,
  abortOperation,
  advancePhase,
  defaultOwner,
  leaseOptionsOf,
  namedOperation,
  OperationLease,
  type OperationOutcome,
  type PhaseResult,
  type PhaseRun,
  reportOf,
  runOperation,
  type StableState,
  saveData,
  savedData,
} from './operationLease.ts';

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
  /** How long a run that died blocks the next one (default 30 s). */
  leaseMs?: number;
  clock?: () => number;
  /** Drills: called when a phase begins, after it was persisted (a test kills the process there). */
  onPhase?: (phase: string) => Promise<void> | void;
}

export interface PartitionRpo {
  topic: string;
  partition: number;
  records: number;
  /** From producer timestamps; a lower bound when `secondsKnown` is false. */
  seconds: number;
  /** False when records are missing but producer timestamps cannot say since when (clock skew, none). */
  secondsKnown: boolean;
  primaryEndOffset: number;
  lastMirrored: number | null;
  observedAt: number;
}

/**
 * What the RPO report can and cannot know. `known` is false when the primary could not be read at the
 * failover (unplanned): records written after the last observation are not counted, so `records` and
 * `seconds` are lower bounds ("at least").
 */
export interface RpoTruth {
  known: boolean;
  /** The newest observation of the primary the numbers come from, and how old it was at the failover. */
  observedAt: number | null;
  observationAgeMs: number | null;
  /** Mirrored partitions (on the standby) that no observation covers: created after it, or never seen. */
  unobservedPartitions: TopicPartition[];
  statement: string;
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
  rpo: {
    /** Exact when `known`; otherwise a lower bound. */
    records: number;
    seconds: number;
    secondsKnown: boolean;
    partitions: PartitionRpo[];
    gaps: LogStartGap[];
  } & RpoTruth;
  groups: Record<string, GroupMove[]>;
  /** Checkpointed groups on topics the standby lacks: reported, not moved. */
  skippedGroups: { group: string; topic: string; partition: number; reason: string }[];
  operationId: string;
  mirrorStopped: string[];
  /** Milliseconds per phase (drain, checkpoint, groups, fence). */
  timings: Record<string, number>;
  warnings: string[];
}

export { type AbortReport, defaultOwner };

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

const DRAIN_BATCH_RECORDS = 5000;
const DRAIN_CHECKS_IN_FLIGHT = 32;
/** A drain batch's bytes: well inside a 512 MB function with the reader's prefetch. */
const DRAIN_BATCH_BYTES = 16 * 1024 * 1024;

function recordBytes(r: SourceRecord): number {
  let n = (r.key?.length ?? 0) + (r.value?.length ?? 0) + 64;
  for (const h of r.headers ?? []) n += h.key.length + (h.value?.length ?? 0);
  return n;
}

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
    /** Throws when the run lost its operation (aborted, taken over): it stops before the next write. */
    check?: () => void;
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
  // Each partition's end when the drain first looked: the target. Applications may keep writing (a
  // planned failover's RPO counts what they write later); chasing a moving end never converges.
  const targets = new Map<string, number>();
  for (;;) {
    const pending: {
      tp: TopicPartition;
      end: number;
      from: number;
      logStart: number;
      lastMirrored: number | null;
    }[] = [];
    const byTopic = groupBy(partitions, (tp) => tp.topic);
    const ends = await Promise.all(
      [...byTopic].map(async ([topic, tps]) => ({
        topic,
        offsets: await deps.reader.offsets(
          topic,
          tps.map((tp) => tp.partition),
        ),
      })),
    );
    // Per round: the topics' ids in one request and the heads in a few, then one latest read per
    // partition that the catching-up check shares (each was read twice, with a metadata request each).
    // The ids after the offsets: a topic re-created between the two then has its new id, which no
    // generation describes (nothing mirrored, so it is copied), never the old topic's map against the
    // new topic's end.
    const lag: LagDeps = { offsetMap: deps.offsetMap, sourceReader: deps.reader, ...optional(deps) };
    const [liveIds] = await Promise.all([
      deps.sourceAdmin?.topicIds([...byTopic.keys()]),
      deps.offsetMap.prefetchHeads?.(partitions),
    ]);
    // Partitions checked in parallel (bounded): one after the other, 1,000 caught-up partitions took
    // seconds of a failover's RTO doing nothing but reads.
    const limit = pLimit(DRAIN_CHECKS_IN_FLIGHT);
    const checks: Promise<void>[] = [];
    const found: (typeof pending)[number][][] = [];
    for (const { topic, offsets } of ends) {
      for (const o of offsets) {
        const slot: (typeof pending)[number][] = [];
        found.push(slot);
        checks.push(
          limit(async () => {
            const tp = { topic, partition: o.partition };
            const key = `${topic}\u0000${o.partition}`;
            if (!targets.has(key)) targets.set(key, o.lastStable);
            const target = Math.min(targets.get(key)!, o.lastStable);
            const floor = await deps.floor?.(tp);
            const latest = await liveLatest(lag, tp, liveIds);
            // Where this direction's unmirrored records start (unknown: from the log start, no gap).
            const expected = latest ? latest.lastSource + 1 : floor;
            if (expected !== undefined) gaps.add(gapBelow(tp, expected, o.logStart, clock()));
            const from = Math.max(expected ?? o.logStart, o.logStart);
            const route = { ...deps.route, ...(floor !== undefined ? { floor } : {}) };
            let done: boolean;
            try {
              done = await caughtUp(lag, tp, target, o.logStart, route, { known: true, entry: latest });
            } catch (error) {
              // The log start passed the read since the offsets were taken: the copy below starts from it.
              const now = await logStartOf(deps.reader, tp);
              if (now === undefined || now <= from) throw error;
              done = false;
            }
            if (done) return;
            slot.push({
              tp,
              end: target,
              from,
              logStart: o.logStart,
              lastMirrored: latest?.lastSource ?? null,
            });
          }),
        );
      }
    }
    await Promise.all(checks);
    pending.push(...found.flat());
    if (pending.length === 0 || clock() > deadline)
      return {
        pending: pending.map(({ tp, end, lastMirrored }) => ({ tp, end, lastMirrored })),
        drained,
        gaps: gaps.list(),
      };
    for (const p of pending) {
      // Bounded in records and bytes: a batch is held in memory and written as one transaction.
      let batch: SourceRecord[] = [];
      let bytes = 0;
      // A live mirror (a Lambda, `kdr mirror`) may take the partition back meanwhile: it copies the
      // same records exactly once, so the drain leaves the partition to it and looks again.
      let fenced = false;
      const flush = async () => {
        deps.check?.();
        try {
          if (batch.length > 0 && !fenced) drained += (await deps.engine.mirrorBatch(p.tp, batch)).mirrored;
        } catch (error) {
          if (!(error instanceof ProducerFencedError)) throw error;
          fenced = true;
        }
        batch = [];
        bytes = 0;
      };
      for await (const records of readFromLogStart(deps.reader, p.tp, p.from, p.end, {
        logStart: p.logStart,
        onGap: (gap) => gaps.add(gap),
        clock,
      })) {
        batch.push(...records);
        bytes += records.reduce((n, r) => n + recordBytes(r), 0);
        if (batch.length >= DRAIN_BATCH_RECORDS || bytes >= DRAIN_BATCH_BYTES) await flush();
        if (fenced || clock() > deadline) break;
      }
      await flush();
      if (fenced) await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 200));
    }
  }
}

const GROUP_MOVES_IN_FLIGHT = 16;

/** Commits each group's translated offsets on the standby; a group with running consumers is skipped. */
async function moveGroups(
  admin: GroupAdmin,
  moves: Map<string, GroupMove[]>,
  warnings: string[],
  verify: () => Promise<void> = async () => {},
): Promise<Record<string, GroupMove[]>> {
  const moved: Record<string, GroupMove[]> = {};
  // Groups in parallel (bounded): 400 groups one after the other were seconds of the RTO.
  const limit = pLimit(GROUP_MOVES_IN_FLIGHT);
  // On the first failure (a lost lease, a broker error) no further group starts, and the run returns
  // only once those in flight have ended: nothing commits behind a run that already failed.
  let stopped = false;
  const results = await Promise.allSettled(
    [...moves].map(([group, list]) =>
      limit(async () => {
        if (stopped) return;
        await verify();
        const state = await admin.groupState(group);
        if (state !== 'Empty' && state !== 'Dead') {
          warnings.push(
            `group ${group} has running consumers on the standby (${state}); its offsets were not moved`,
          );
          return;
        }
        await admin.commitOffsets(
          group,
          list.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.standbyOffset })),
        );
        moved[group] = list;
      }).catch((error) => {
        stopped = true;
        throw error;
      }),
    ),
  );
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  // In plan order, as one after the other gave them.
  return Object.fromEntries([...moves.keys()].filter((g) => g in moved).map((g) => [g, moved[g]!]));
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
    // Producer time against kdr's: a producer clock ahead of kdr's (or no timestamp seen) leaves the
    // seconds unknown; they are never reported as 0 for records that are missing.
    const age =
      o.firstUnmirroredTimestamp === null ? null : (o.observedAt - o.firstUnmirroredTimestamp) / 1000;
    const secondsKnown = records === 0 || (age !== null && age > 0);
    return {
      topic: o.topic,
      partition: o.partition,
      records,
      seconds: records > 0 && age !== null ? Math.max(0, age) : 0,
      secondsKnown,
      primaryEndOffset: o.endOffset,
      lastMirrored: mirrored,
      observedAt: o.observedAt,
    };
  });
}

export type FailoverOutcome = OperationOutcome<FailoverReport>;

export interface FailoverOptions {
  /** Absent when resuming: the operation's own mode (an explicit 'unplanned' may take over a planned one). */
  mode?: FailoverMode;
  /** The drain's budget, from the operation's start, across runs. */
  timeoutMs: number;
  /** When this run must stop (a Lambda invocation's remaining time): it ends at a phase boundary. */
  runDeadline?: number;
  /** Resume only this operation (a continuation or a retried invocation); finished: its outcome. */
  operationId?: string;
}

/** What a phase's run left for the next ones; each is saved before the phase is marked done. */
interface FailoverPlan {
  moves: Record<string, GroupMove[]>;
  skippedGroups: FailoverReport['skippedGroups'];
  rpo: PartitionRpo[];
  truth: RpoTruth;
  gaps: LogStartGap[];
  warnings: string[];
}

interface Unfenced extends TopicPartition {
  error: string;
}

interface FailoverRun extends PhaseRun {
  deps: FailoverDeps;
  /**
   * What this run's fence found of each partition: the latest committed entry of its generation. Nothing
   * is mirrored after the fence, so the checkpoint and the moves read it here rather than once each
   * from the map; a run that resumes after the fence has none and reads the map.
   */
  fenced: Map<string, { generation: number; latest: OffsetMapEntry | undefined }>;
  /** Each partition's live generation and latest entry, from the fence when it describes the live topic. */
  mirrored: MirroredOf;
}

/** What the fence found when its generation describes the live topic, else read from the map once. */
function mirroredAfterFence(offsetMap: OffsetMapStore, fenced: FailoverRun['fenced']): MirroredOf {
  const read = mirroredOnce(offsetMap);
  return async (tp, liveTopicId) => {
    const found = fenced.get(partitionKey(tp));
    if (found) {
      const { generation } = await liveGeneration(offsetMap, tp, liveTopicId);
      if (generation === found.generation) return { generation, latest: found.latest };
    }
    return read(tp, liveTopicId);
  };
}

/**
 * Starts a failover, or resumes the one in progress (its lease expired or its owner died), and runs its
 * phases until it is done or this run's deadline comes. A failure before the flip aborts back to
 * MIRRORING (nothing applications use has changed); after it, the operation stays to be resumed.
 */
export async function runFailover(deps: FailoverDeps, options: FailoverOptions): Promise<FailoverOutcome> {
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ pair: deps.pair, operation: 'failover' });
  const lease = await acquireFailover(deps, options, log);
  if (!(lease instanceof OperationLease)) return lease;
  const fenced: FailoverRun['fenced'] = new Map();
  const run: FailoverRun = {
    deps,
    lease,
    log,
    clock,
    runDeadline: options.runDeadline,
    stateStore: deps.stateStore,
    fenced,
    mirrored: mirroredAfterFence(deps.offsetMap, fenced),
  };
  return runOperation<FailoverReport, FailoverRun>(run, FAILOVER_PHASE_RUNNERS, deps, stableOf(deps));
}

/** The report of a failover run to its end (the CLI without a deadline, tests). */
export async function failover(deps: FailoverDeps, options: FailoverOptions): Promise<FailoverReport> {
  return reportOf(await runFailover(deps, options));
}

/** Begins a new failover, or claims the one in progress; a finished one asked for by id: its outcome. */
async function acquireFailover(
  deps: FailoverDeps,
  options: FailoverOptions,
  log: Logger,
): Promise<OperationLease | FailoverOutcome> {
  const control = await deps.stateStore.getControl();
  const done = await namedOperation<FailoverReport>(deps, control, 'failover', options.operationId);
  if (done) return done;
  const op = control.operation;
  if (op?.kind === 'failover' && !op.outcome) {
    const lease = await OperationLease.claim(leaseOptionsOf(deps, log), control);
    if (options.mode === 'unplanned' && lease.operation.mode === 'planned') await toUnplanned(lease);
    return lease;
  }
  if (control.state !== 'MIRRORING' || control.activeCluster !== deps.primaryAlias) {
    throw new StateError('STATE_CONFLICT', describeConflict(control, 'FAILING_OVER'), {
      details: { pair: deps.pair, epoch: control.epoch, state: control.state },
    });
  }
  const mode = options.mode ?? 'planned';
  const lease = await OperationLease.begin(
    leaseOptionsOf(deps, log),
    control,
    { state: 'FAILING_OVER', activeCluster: deps.primaryAlias, reason: `${mode} failover` },
    { kind: 'failover', mode, phase: mode === 'planned' ? 'drain' : 'fence', timeoutMs: options.timeoutMs },
  );
  log.info('failing over', { operationId: lease.operation.id, epoch: lease.control.epoch, mode });
  return lease;
}

/** A planned failover whose primary died: carried on as unplanned, while no group was moved yet. */
async function toUnplanned(lease: OperationLease): Promise<void> {
  const op = lease.operation;
  if (phaseReached(op, 'groups'))
    throw new StateError(
      'STATE_CONFLICT',
      `planned failover ${op.id} is in phase ${op.phase}: it already moved groups from its own checkpoint; resume it with \`kdr failover\` (without --unplanned)`,
    );
  await lease.patch({ mode: 'unplanned', phase: 'fence' });
}

const stableOf = (deps: Pick<FailoverDeps, 'primaryAlias'>): StableState => ({
  state: 'MIRRORING',
  activeCluster: deps.primaryAlias,
});

/** `kdr failover --abort`: back to MIRRORING while that is safe (before the standby became active). */
export function abortFailover(
  deps: Pick<FailoverDeps, 'stateStore' | 'primaryAlias' | 'pair' | 'owner' | 'logger'>,
): Promise<AbortReport> {
  return abortOperation(deps, 'failover', stableOf(deps));
}

const FAILOVER_PHASE_RUNNERS = {
  drain: drainPhase,
  fence: fencePhase,
  checkpoint: checkpointPhase,
  translate: translatePhase,
  groups: groupsPhase,
  flip: flipPhase,
  'stop-mirror': stopMirrorPhase,
} satisfies Partial<Record<OperationPhase, (run: FailoverRun) => Promise<PhaseResult>>>;

/** Planned: copy what the mirror has not yet copied, until caught up, the operation's timeout, or this run's deadline. */
async function drainPhase(run: FailoverRun): Promise<PhaseResult> {
  const { deps, lease, clock } = run;
  const op = lease.operation;
  const partitions = await mirroredPartitions(deps.primaryAdmin, deps.selectTopic).catch((error) => {
    throw new KdrError(
      'KAFKA_UNAVAILABLE',
      `the primary is not reachable for a planned failover (run \`kdr failover --unplanned\` to carry this one on without it): ${describeError(error)}`,
      { cause: error },
    );
  });
  const opDeadline = op.startedAt + op.timeoutMs;
  const deadline = Math.min(opDeadline, run.runDeadline ?? Number.POSITIVE_INFINITY);
  const started = clock();
  const result = await drain(
    {
      engine: deps.engine,
      reader: deps.primaryReader,
      offsetMap: deps.offsetMap,
      ...(deps.counterpartMap ? { counterpartMap: deps.counterpartMap } : {}),
      ...(deps.primaryAdmin.topicIds
        ? { sourceAdmin: { topicIds: (t: string[]) => deps.primaryAdmin.topicIds!(t) } }
        : {}),
      route: { sourceAlias: deps.primaryAlias, targetAlias: deps.standbyAlias },
      check: () => lease.check(),
    },
    partitions,
    deadline,
    clock,
  );
  run.log.info('drained the mirror', { records: result.drained });
  const earlier = await saved<{ drained: number; gaps: LogStartGap[]; ms: number }>(run, 'drain');
  const gaps = new GapLog();
  for (const gap of earlier?.gaps ?? []) gaps.add(gap);
  const proofs = result.gaps.length > 0 ? await previousObservations(deps.stateStore, run.log) : new Map();
  for (const gap of result.gaps) gaps.add(withProof(gap, proofs));
  await save(run, 'drain', {
    drained: (earlier?.drained ?? 0) + result.drained,
    gaps: gaps.list(),
    ms: (earlier?.ms ?? 0) + clock() - started,
  });
  if (result.pending.length === 0) return advance(run);
  if (clock() <= opDeadline) return 'paused';
  const behind = result.pending.map(
    (p) => `${p.tp.topic}-${p.tp.partition} (last mirrored ${p.lastMirrored ?? 'none'}, end ${p.end})`,
  );
  throw new TimeoutError(
    `mirror lag did not reach zero within ${op.timeoutMs / 1000} s on ${result.pending.length} partition(s): ${behind.slice(0, 10).join(', ')}`,
    { details: { pending: result.pending.length } },
  );
}

/**
 * No mirror writes from here on (the guard refuses from this phase), and opening each partition's
 * writer aborts a transaction one had begun before; an entry written ahead of a commit that never
 * happened is removed, so translations see only what is on the standby.
 */
async function fencePhase(run: FailoverRun): Promise<PhaseResult> {
  const { deps, lease } = run;
  const started = run.clock();
  await deps.engine.close();
  const partitions = await mirroredPartitions(deps.standbyAdmin, deps.selectTopic);
  // One partition that cannot be fenced (its topic deleted meanwhile, standby data lost) is reported and
  // its groups left alone; it never aborts the failover of the others.
  const unfenced: Unfenced[] = [];
  for (const outcome of await deps.engine.fenceAll(partitions, { check: () => lease.check() })) {
    if (outcome.fenced) {
      run.fenced.set(partitionKey(outcome.source), outcome);
      continue;
    }
    unfenced.push({ ...outcome.source, error: describeError(outcome.error) });
    run.log.warn('could not fence a partition', { ...outcome.source, error: describeError(outcome.error) });
  }
  lease.check();
  await save(run, 'fence', { partitions, unfenced, ms: run.clock() - started });
  return advance(run);
}

/** Planned: the final checkpoint, taken with the mirror fenced; groups beyond it land after its last record. */
async function checkpointPhase(run: FailoverRun): Promise<PhaseResult> {
  const { deps, clock } = run;
  const started = clock();
  const checkpoint = await runCheckpoint(
    {
      primaryAdmin: deps.primaryAdmin,
      standbyAdmin: deps.standbyAdmin,
      primaryReader: deps.primaryReader,
      offsetMap: deps.offsetMap,
      ...(deps.counterpartMap ? { counterpartMap: deps.counterpartMap } : {}),
      stateStore: deps.stateStore,
      selectTopic: deps.selectTopic,
      selectGroup: deps.selectGroup,
      logger: run.log,
      clock,
      mirrored: run.mirrored,
    },
    { commitOnStandby: false, mirrorGroups: deps.mirrorGroups, during: 'failover' },
  );
  // Skipped only if the pair moved meanwhile (an abort): never leave groups unmoved without saying so.
  if (checkpoint.skipped)
    throw new StateError('LEASE_LOST', `the failover's final checkpoint was skipped: ${checkpoint.skipped}`);
  const drained = await saved<{ gaps: LogStartGap[] }>(run, 'drain');
  const gaps = new GapLog();
  for (const gap of [...(drained?.gaps ?? []), ...checkpoint.gaps]) gaps.add(gap);
  const plan = await planMoves(run, checkpoint.checkpoints, [...checkpoint.warnings]);
  await save(run, 'plan', {
    ...plan,
    rpo: rpoFrom(checkpoint.observations, new Map()),
    truth: {
      known: true,
      observedAt: checkpoint.at,
      observationAgeMs: 0,
      unobservedPartitions: [],
      statement: '',
    },
    gaps: gaps.list(),
    ms: clock() - started,
  } satisfies FailoverPlan & { ms: number });
  return advance(run);
}

/**
 * Unplanned: each stored checkpoint translated again (the mirror may have copied more since), in the
 * topic generation it was taken in. Groups on topics the standby lacks are reported and skipped.
 */
async function translatePhase(run: FailoverRun): Promise<PhaseResult> {
  const { deps, clock } = run;
  const started = clock();
  const set = await deps.stateStore.getCheckpoints();
  const warnings: string[] = [];
  if (set.at === null) warnings.push('no checkpoint was ever taken: consumer groups cannot be moved');
  const onStandby = new Set(await deps.standbyAdmin.listTopics());
  const present = set.groups.filter((c) => onStandby.has(c.topic));
  const skippedGroups = set.groups
    .filter((c) => !onStandby.has(c.topic))
    .map((c) => ({
      group: c.group,
      topic: c.topic,
      partition: c.partition,
      reason: `topic ${c.topic} does not exist on ${deps.standbyAlias}`,
    }));
  for (const s of skippedGroups) warnings.push(`group ${s.group}: ${s.reason}; its position was not moved`);
  const checkpointedIds = new Map<string, string>();
  for (const c of present) if (c.sourceTopicId) checkpointedIds.set(c.topic, c.sourceTopicId);
  const again = await translateAll(
    deps.offsetMap,
    present.map((c) => ({ ...c, offset: c.sourceOffset })),
    {
      topicIds: checkpointedIds,
      mirrored: run.mirrored,
      ...(deps.counterpartMap ? { counterpartMap: deps.counterpartMap } : {}),
    },
  );
  const plan = await planMoves(run, again, warnings);
  const fenced = await saved<{ partitions: TopicPartition[] }>(run, 'fence');
  const { rpo, truth } = await unplannedRpo(run, set, fenced?.partitions ?? []);
  const gaps = new GapLog();
  for (const o of set.observations) gaps.add(o.gap);
  await save(run, 'plan', {
    ...plan,
    skippedGroups: [...skippedGroups, ...plan.skippedGroups],
    rpo,
    truth,
    gaps: gaps.list(),
    ms: clock() - started,
  } satisfies FailoverPlan & { ms: number });
  return advance(run);
}

/**
 * Where each checkpointed group goes on the standby: its exact translation, or, beyond what was
 * mirrored, right after the last mirrored record (the mirror is fenced: nothing lands between).
 */
async function planMoves(
  run: FailoverRun,
  checkpoints: GroupCheckpoint[],
  warnings: string[],
): Promise<Pick<FailoverPlan, 'moves' | 'skippedGroups' | 'warnings'>> {
  const moves: Record<string, GroupMove[]> = {};
  const skippedGroups: FailoverReport['skippedGroups'] = [];
  const fenced = await saved<{ unfenced?: Unfenced[] }>(run, 'fence');
  const unfenced = new Map((fenced?.unfenced ?? []).map((u) => [`${u.topic}\u0000${u.partition}`, u.error]));
  // Where each partition's unmirrored groups start, read for all partitions at once, 16 at a time (one
  // after the other they were a second of the RTO per 300 partitions).
  const after = new Map<string, Promise<number>>();
  const limit = pLimit(16);
  const beyond = checkpoints.filter(
    (c) => c.standbyOffset === null && !unfenced.has(`${c.topic}\u0000${c.partition}`),
  );
  await run.deps.offsetMap.prefetchHeads?.(beyond);
  const afterKey = (c: GroupCheckpoint) => `${c.topic}\u0000${c.partition}\u0000${c.sourceTopicId ?? ''}`;
  for (const c of beyond)
    if (!after.has(afterKey(c)))
      after.set(
        afterKey(c),
        limit(() => afterLastMirrored(run, c, c.sourceTopicId ?? null)),
      );
  // Each is awaited below; a rejection must not go unhandled before its turn.
  for (const p of after.values()) p.catch(() => {});
  for (const c of checkpoints) {
    const notFenced = unfenced.get(`${c.topic}\u0000${c.partition}`);
    if (notFenced !== undefined) {
      const reason = `${c.topic}-${c.partition} could not be fenced on the standby (${notFenced})`;
      skippedGroups.push({ group: c.group, topic: c.topic, partition: c.partition, reason });
      warnings.push(`group ${c.group}: ${reason}; its position there was not moved`);
      continue;
    }
    let standbyOffset = c.standbyOffset;
    const exact = standbyOffset !== null;
    if (standbyOffset === null) {
      standbyOffset = await after.get(afterKey(c))!;
      if (run.lease.operation.mode === 'unplanned')
        warnings.push(
          `group ${c.group}: ${c.topic}-${c.partition} committed ${c.sourceOffset}, beyond what was mirrored; it starts right after the last mirrored record, at ${standbyOffset}`,
        );
    }
    moves[c.group] ??= [];
    moves[c.group]!.push({
      topic: c.topic,
      partition: c.partition,
      sourceOffset: c.sourceOffset,
      standbyOffset,
      exact,
    });
  }
  return { moves, skippedGroups, warnings };
}

/** The standby offset right after the partition's last mirrored record (its end when nothing was). */
async function afterLastMirrored(
  run: FailoverRun,
  tp: TopicPartition,
  topicId: string | null,
): Promise<number> {
  const { latest } = await run.mirrored(tp, topicId);
  if (latest) return latest.lastStandby + 1;
  const [o] = await run.deps.standbyReader.offsets(tp.topic, [tp.partition]);
  return o!.lastStable;
}

async function groupsPhase(run: FailoverRun): Promise<PhaseResult> {
  const started = run.clock();
  const plan = (await saved<FailoverPlan>(run, 'plan'))!;
  const warnings: string[] = [];
  const moved = await moveGroups(run.deps.standbyAdmin, new Map(Object.entries(plan.moves)), warnings, () =>
    run.lease.verify(),
  );
  await save(run, 'groups', { moved, warnings, ms: run.clock() - started });
  return advance(run);
}

/**
 * The standby becomes active. A planned failover first counts what the primary got after its final
 * checkpoint (applications may still write to it): that is the RPO too.
 */
async function flipPhase(run: FailoverRun): Promise<PhaseResult> {
  const { deps, lease } = run;
  const op = lease.operation;
  if (op.mode === 'planned') {
    const plan = (await saved<FailoverPlan>(run, 'plan'))!;
    const later = await writtenSinceCheckpoint(run, plan.rpo);
    await save(run, 'plan', { ...plan, rpo: later });
  }
  await run.hold?.('after:flip');
  await lease.transition(
    { state: 'FAILED_OVER', activeCluster: deps.standbyAlias, reason: `${op.mode} failover done` },
    { phase: 'stop-mirror' },
  );
  run.log.info('failed over', { operationId: op.id, epoch: lease.control.epoch });
  return 'next';
}

/** Each partition's RPO plus what its primary partition got after the observation it came from. */
async function writtenSinceCheckpoint(run: FailoverRun, rpo: PartitionRpo[]): Promise<PartitionRpo[]> {
  const byTopic = groupBy(rpo, (p) => p.topic);
  const now = run.clock();
  const out: PartitionRpo[] = [];
  for (const [topic, parts] of byTopic) {
    const offsets = await run.deps.primaryReader.offsets(
      topic,
      parts.map((p) => p.partition),
    );
    const ends = new Map(offsets.map((o) => [o.partition, o.lastStable]));
    for (const p of parts) {
      const end = ends.get(p.partition) ?? p.primaryEndOffset;
      const later = Math.max(0, end - p.primaryEndOffset);
      if (later === 0) {
        out.push(p);
        continue;
      }
      // The first record written after the checkpoint: since when the standby misses records.
      const first = await firstTimestamp(run.deps.primaryReader, p, p.primaryEndOffset, end);
      const age = first === null ? null : (now - first) / 1000;
      out.push({
        ...p,
        records: p.records + later,
        primaryEndOffset: end,
        seconds: Math.max(p.seconds, age ?? 0),
        secondsKnown: (p.records === 0 || p.secondsKnown) && age !== null && age > 0,
      });
    }
  }
  return out;
}

async function firstTimestamp(
  reader: PartitionReader,
  tp: TopicPartition,
  from: number,
  end: number,
): Promise<number | null> {
  for await (const records of reader.readRange(tp, from, end)) if (records[0]) return records[0].timestamp;
  return null;
}

async function stopMirrorPhase(run: FailoverRun): Promise<PhaseResult> {
  const { deps, lease } = run;
  const warnings: string[] = [];
  const mirrorStopped = deps.stopMirror
    ? await deps.stopMirror().catch((error) => {
        warnings.push(`could not stop the mirror's event sources: ${describeError(error)}`);
        return [];
      })
    : [];
  const report = await buildReport(run, mirrorStopped, warnings);
  await save(run, 'report', report);
  for (const gap of report.rpo.gaps)
    if (!gap.markersOnly) run.log.warn(describeGap(gap, deps.primaryAlias), { gap });
  await run.hold?.('after:stop-mirror');
  await lease.patch({ phase: 'done', outcome: 'done', finishedAt: run.clock() });
  return 'next';
}

async function buildReport(
  run: FailoverRun,
  mirrorStopped: string[],
  warnings: string[],
): Promise<FailoverReport> {
  const { deps, lease } = run;
  const op = lease.operation;
  const [plan, groups, drained, fenced] = await Promise.all([
    saved<FailoverPlan & { ms: number }>(run, 'plan'),
    saved<{ moved: Record<string, GroupMove[]>; warnings: string[]; ms: number }>(run, 'groups'),
    saved<{ ms: number }>(run, 'drain'),
    saved<{ ms: number }>(run, 'fence'),
  ]);
  const finished = run.clock();
  const records = plan!.rpo.reduce((n, p) => n + p.records, 0);
  const seconds = Math.max(0, ...plan!.rpo.map((p) => p.seconds));
  const secondsKnown = plan!.rpo.every((p) => p.secondsKnown !== false);
  const truth = { ...plan!.truth };
  if (truth.known)
    truth.statement = secondsKnown
      ? `RPO ${records} records, ${seconds.toFixed(1)} s`
      : `RPO ${records} records; seconds unknown (producer timestamps are not before kdr's clock), at least ${seconds.toFixed(1)} s`;
  return {
    pair: deps.pair,
    operationId: op.id,
    epoch: lease.control.epoch,
    from: deps.primaryAlias,
    to: deps.standbyAlias,
    mode: op.mode ?? 'planned',
    startedAt: new Date(op.startedAt).toISOString(),
    finishedAt: new Date(finished).toISOString(),
    rtoMs: finished - op.startedAt,
    rpo: { records, seconds, secondsKnown, partitions: plan!.rpo, gaps: plan!.gaps, ...truth },
    groups: groups!.moved,
    skippedGroups: plan!.skippedGroups,
    mirrorStopped,
    timings: {
      ...(drained ? { drainMs: drained.ms } : {}),
      fenceMs: fenced?.ms ?? 0,
      [op.mode === 'unplanned' ? 'checkpointsMs' : 'checkpointMs']: plan!.ms,
      groupsMs: groups!.ms,
    },
    warnings: [
      ...plan!.warnings,
      ...groups!.warnings,
      ...(truth.known ? [] : [truth.statement]),
      ...warnings,
    ],
  };
}

const advance = advancePhase;
const save = saveData;
const saved = savedData;

/**
 * Unplanned: the primary is not read, so what it got after the last observation is unknown. The report
 * gives what the observation proves (at least) and says what it cannot know, never "0" by default.
 */
async function unplannedRpo(
  run: FailoverRun,
  set: CheckpointSet,
  standbyPartitions: TopicPartition[],
): Promise<{ rpo: PartitionRpo[]; truth: RpoTruth }> {
  const { deps } = run;
  const mirrored = new Map<string, number | null>();
  // Each observation in the topic generation it was taken in: a re-created topic not yet mirrored has
  // nothing mirrored, whatever the old topic had.
  await deps.offsetMap.prefetchHeads?.(set.observations);
  const limit = pLimit(16);
  await Promise.all(
    set.observations.map((o) =>
      limit(async () => {
        const { generation } = await liveGeneration(deps.offsetMap, o, o.sourceTopicId ?? null);
        const latest = generation === null ? undefined : await deps.offsetMap.latest({ ...o, generation });
        mirrored.set(`${o.topic}-${o.partition}`, latest?.lastSource ?? null);
      }),
    ),
  );
  const rpo = rpoFrom(set.observations, mirrored);
  const seen = new Set(set.observations.map((o) => `${o.topic}-${o.partition}`));
  const unobservedPartitions = standbyPartitions.filter((tp) => !seen.has(`${tp.topic}-${tp.partition}`));
  const records = rpo.reduce((n, p) => n + p.records, 0);
  const seconds = Math.max(0, ...rpo.map((p) => p.seconds));
  const ageMs = set.at === null ? null : run.lease.operation.startedAt - set.at;
  const unobserved =
    unobservedPartitions.length === 0
      ? ''
      : `; ${unobservedPartitions.length} mirrored partition(s) were never observed there (${unobservedPartitions
          .slice(0, 5)
          .map((tp) => `${tp.topic}-${tp.partition}`)
          .join(
            ', ',
          )}${unobservedPartitions.length > 5 ? ', …' : ''}), created after the observation or never checkpointed`;
  const statement =
    set.at === null || ageMs === null
      ? `RPO unknown: no checkpoint ever observed ${deps.primaryAlias}, so what it had beyond what was mirrored is not counted${unobserved}`
      : `RPO unknown: at least ${records} records / ${seconds.toFixed(1)} s (seconds from producer timestamps); ${deps.primaryAlias} was last observed ${(ageMs / 1000).toFixed(1)} s before the failover and what it got after that is not counted${unobserved}`;
  return {
    rpo,
    truth: {
      known: false,
      observedAt: set.at,
      observationAgeMs: ageMs,
      unobservedPartitions,
      statement,
    },
  };
}
