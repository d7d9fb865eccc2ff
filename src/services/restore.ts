import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OutgoingRecord, SourceRecord } from '../core/records.ts';
import { recordSize } from '../core/records.ts';
import {
  countPastRetention,
  formatOrigin,
  groupTargetOffsets,
  type Landing,
  mapTopics,
  originOfRestored,
  type PastRetention,
  PositionTracker,
  parseRetentionMs,
  pastRetentionProblem,
  planRestore,
  RESTAMP_HEADER,
  RESTORE_HEADER,
  type RestoredRetention,
  type RestoreMode,
  type RestorePlan,
  restoreId,
  snapshotAt,
  type TargetTopicState,
  type TopicPlan,
  targetPartition,
} from '../core/restore.ts';
import type { SegmentRef, SnapshotManifest } from '../core/snapshot.ts';
import { PROVENANCE_HEADROOM_BYTES } from '../core/topicSync.ts';
import { InputError, isKdrError, KdrError, NotFoundError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type {
  GroupAdmin,
  MultiPartitionWriter,
  PartitionBatch,
  PartitionReader,
  TopicAdmin,
  TransactionalWriterFactory,
} from '../ports/kafka.ts';
import type { ObjectStore } from '../ports/objectStore.ts';
import type { RestoreStore } from '../ports/restoreStore.ts';
import { waitVisible } from './lag.ts';
import { listManifests, loadManifest, readSegment, recordCountProblem } from './snapshot.ts';

/**
 * Restores topics and consumer-group positions from a snapshot into a cluster.
 *
 *   1. plan: pick the snapshot (by id, or the newest cut at or before --at), map its topics to target
 *      topics, check every target topic against the mode, and check every segment's checksum. Bad input,
 *      a non-empty topic in `new` mode or a corrupt segment stops the restore here, before any write.
 *   2. prepare: (replace) a safety snapshot of what is there, then delete and recreate; create the rest.
 *   3. write: replay each source partition in offset order, segments downloaded and decoded ahead, in
 *      transactions under one transactional id (a second process of the same restore fences the first).
 *      Progress is saved after each transaction; after a crash, the target partitions' tails tell which
 *      records arrived (their `kdr.snapshot` header), so nothing is written twice.
 *   4. groups: commit each group's position, translated to the restored offsets (empty groups only).
 *
 * Every phase is saved in the restore's progress (DynamoDB): a killed or timed-out restore, run again with
 * the same arguments, continues where it stopped; a completed one returns its report.
 */

export interface RestoreRequest {
  snapshotId?: string;
  /** ISO time: the newest snapshot cut at or before it. */
  at?: string;
  /** With `at`: the cluster whose snapshots are considered (alias). */
  from: string;
  topics?: string;
  rename?: string[];
  topicPrefix?: string;
  mode: RestoreMode;
  yes: boolean;
  safetySnapshot: boolean;
  dryRun: boolean;
  /** --retention-ms: retention.ms of the restored topics (-1: no limit); must keep every record. */
  retentionMs?: number;
  /** --restamp: records get the restore's time as timestamp, the original kept in header kdr.ts. */
  restamp?: boolean;
}

export interface RestoreTarget {
  /** What the operator named: primary, standby, or a broker list. */
  label: string;
  admin: TopicAdmin & GroupAdmin;
  reader: PartitionReader;
  writers: TransactionalWriterFactory;
}

export interface RestoreProgressEvent {
  phase: 'verify' | 'write';
  done: number;
  total: number;
  records: number;
  totalRecords: number;
  bytes: number;
}

export interface RestoreDeps {
  objects: ObjectStore;
  snapshotPrefix: string;
  store: RestoreStore<RestoreProgress>;
  target: RestoreTarget;
  /**
   * Takes a snapshot of these target topics before `replace` deletes them; returns its id. `owner` is the
   * restore's identity, stable across its runs (for the snapshot's lease).
   */
  safetySnapshot?: (topics: string[], options?: { owner?: string }) => Promise<string>;
  maxTransactionRecords: number;
  maxRequestBytes: number;
  /** Segments downloaded and decoded ahead of the one being written. */
  prefetch: number;
  logger: Logger;
  owner?: string;
  clock?: () => number;
  onProgress?: (p: RestoreProgressEvent) => void;
}

interface PartitionStats {
  records: number;
  firstOffset: number | null;
  lastOffset: number | null;
}

type TopicPlanSaved = Omit<TopicPlan, 'segments'>;

export interface GroupResult {
  status: 'committed' | 'skipped';
  offsets: { topic: string; partition: number; offset: number }[];
  error?: string;
}

/**
 * The phases of a restore, in order. plan and verify write nothing and keep nothing (a refused or killed
 * restore leaves no trace); from safety-snapshot on, the phase is saved in the restore's progress.
 */
export const RESTORE_PHASES = [
  'plan',
  'verify',
  'safety-snapshot',
  'prepare-topics',
  'write',
  'groups',
  'complete',
] as const;
export type RestorePhase = (typeof RESTORE_PHASES)[number];
export type SavedPhase = Exclude<RestorePhase, 'plan' | 'verify'>;

/** The options that change what is written: a resumed restore keeps the ones it started with. */
export interface RestoreOptions {
  restamp: boolean;
  retentionMs: number | null;
}

/** How far the verify phase got; a continued invocation goes on from here (same counts, same `asOf`). */
export interface Verification {
  /** Segments checked, in plan order. */
  segments: number;
  /** The time records are counted past retention at (ms since the epoch). */
  asOf: number;
  /** Per target topic: the retention counted against and the records past it. */
  topics: Record<string, { retentionMs: number | null } & PastRetention>;
}

/** A target topic's retention and the snapshot records already past it when the restore was planned. */
export interface TopicPastRetention extends PastRetention {
  retentionMs: number | null;
  retentionFrom: RestoredRetention['from'];
  asOf: string;
}

export interface RestoreProgress {
  restoreId: string;
  generation: number;
  phase: SavedPhase;
  snapshotId: string;
  snapshotCluster: string;
  cutAt: string;
  target: string;
  mode: RestoreMode;
  /** Absent in progress saved before these options existed (neither was given). */
  options?: RestoreOptions;
  plan: Omit<RestorePlan, 'topics'> & { topics: TopicPlanSaved[] };
  /** Per target topic (absent in older progress). */
  pastRetention?: Record<string, TopicPastRetention>;
  safetySnapshotId: string | null;
  /** Target topics created or recreated (a resumed replace never deletes again). */
  prepared: string[];
  /** `<source topic>/<partition>` → last snapshot offset written. */
  done: Record<string, number>;
  /** `<target topic>/<partition>` → where the tail scan of a resumed restore starts. */
  scanFrom: Record<string, number>;
  sourceStats: Record<string, PartitionStats>;
  targetStats: Record<string, PartitionStats>;
  landings: Record<string, Landing>;
  records: number;
  bytes: number;
  groups: Record<string, GroupResult>;
  /** What the run found on the way (a target log start that moved under a resumed restore). */
  warnings?: string[];
  startedAt: string;
  finishedAt: string | null;
  owner: string;
}

export interface RestoreReport {
  restoreId: string;
  snapshotId: string;
  snapshotCluster: string;
  cutAt: string;
  target: string;
  mode: RestoreMode;
  dryRun: boolean;
  restamp: boolean;
  safetySnapshotId: string | null;
  topics: {
    source: string;
    target: string;
    action: TopicPlan['action'];
    partitions: number;
    repartitioned: boolean;
    records: number;
    bytes: number;
    /** The target's retention and how many snapshot records were past it at the plan (absent: not counted). */
    pastRetention?: TopicPastRetention;
    /** Per snapshot partition: the offsets restored. Per target partition: where they went. */
    sourcePartitions?: ({ partition: number } & PartitionStats)[];
    targetPartitions?: ({ partition: number } & PartitionStats)[];
  }[];
  groups: Record<
    string,
    GroupResult | { status: 'planned'; positions: Record<string, Record<string, number>> }
  >;
  records: number;
  bytes: number;
  durationMs: number;
  warnings: string[];
}

export type RestoreResult =
  | { status: 'complete'; report: RestoreReport }
  | {
      status: 'in-progress';
      restoreId: string;
      phase: RestorePhase;
      /** Segments whose checksum was checked (continue the check from there). */
      verifiedSegments?: number;
      /** The verify phase's counts so far: pass them to the next invocation. */
      verification?: Verification;
      records: number;
      totalRecords: number;
    };

/** How long a run waits for the snapshot lease a killed safety snapshot left (the lease's default is 60 s). */
const SAFETY_SNAPSHOT_WAIT_MS = 5 * 60_000;
/** What a run keeps in hand before its deadline to save its progress. */
const DEADLINE_MARGIN_MS = 1_000;
/** Produce-request room for the record batch header around the records. */
const BATCH_OVERHEAD_BYTES = 512;
const DEFAULT_MAX_MESSAGE_BYTES = 1048588;

export function restoreTransactionalId(id: string): string {
  return `kdr-restore-${id}`;
}

async function chooseSnapshot(deps: RestoreDeps, request: RestoreRequest): Promise<SnapshotManifest> {
  if (request.snapshotId !== undefined) {
    if (request.at !== undefined) throw new InputError('give either --snapshot or --at, not both');
    return loadManifest(deps.objects, request.snapshotId, deps.snapshotPrefix);
  }
  if (request.at === undefined) throw new InputError('a restore needs --snapshot ID or --at ISO-TIME');
  const at = Date.parse(request.at);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(request.at) || Number.isNaN(at))
    throw new InputError(
      `expected --at as an ISO time such as 2026-11-25T02:00:00Z, got ${JSON.stringify(request.at)}`,
    );
  const manifests = await listManifests(deps.objects, request.from, deps.snapshotPrefix);
  const chosen = snapshotAt(manifests, at);
  if (!chosen)
    throw new NotFoundError(
      `no snapshot of ${request.from} was cut at or before ${new Date(at).toISOString()} (${manifests.length} snapshots, the oldest cut at ${manifests[0]?.cutAt ?? 'never'})`,
    );
  return chosen;
}

const statsAdd = (stats: Record<string, PartitionStats>, key: string, offset: number) => {
  const s = stats[key] ?? { records: 0, firstOffset: null, lastOffset: null };
  s.records++;
  if (s.firstOffset === null || offset < s.firstOffset) s.firstOffset = offset;
  if (s.lastOffset === null || offset > s.lastOffset) s.lastOffset = offset;
  stats[key] = s;
};

/** Each item's `load`, started `depth` ahead of the consumer, in order (memory: depth + 1 results). */
async function* loadedAhead<T, R>(
  items: readonly T[],
  depth: number,
  load: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const queue: Promise<R>[] = [];
  let next = 0;
  try {
    while (next < items.length || queue.length > 0) {
      while (next < items.length && queue.length <= depth) queue.push(load(items[next++]!));
      yield await queue.shift()!;
    }
  } finally {
    // Downloads started ahead and never consumed must not reject unobserved.
    for (const pending of queue) pending.catch(() => {});
  }
}

function reportOf(progress: RestoreProgress, started: number, clock: () => number): RestoreReport {
  const topics = progress.plan.topics.map((t) => {
    const source = Object.entries(progress.sourceStats)
      .filter(([k]) => k.startsWith(`${t.source}/`) && !k.slice(t.source.length + 1).includes('/'))
      .map(([k, s]) => ({ partition: Number(k.slice(t.source.length + 1)), ...s }))
      .sort((a, b) => a.partition - b.partition);
    const target = Object.entries(progress.targetStats)
      .filter(([k]) => k.startsWith(`${t.target}/`) && !k.slice(t.target.length + 1).includes('/'))
      .map(([k, s]) => ({ partition: Number(k.slice(t.target.length + 1)), ...s }))
      .sort((a, b) => a.partition - b.partition);
    return {
      source: t.source,
      target: t.target,
      action: t.action,
      partitions: t.targetPartitions,
      repartitioned: t.repartitioned,
      records: source.reduce((n, s) => n + s.records, 0),
      bytes: t.bytes,
      ...(progress.pastRetention?.[t.target] ? { pastRetention: progress.pastRetention[t.target] } : {}),
      sourcePartitions: source,
      targetPartitions: target,
    };
  });
  return {
    restoreId: progress.restoreId,
    snapshotId: progress.snapshotId,
    snapshotCluster: progress.snapshotCluster,
    cutAt: progress.cutAt,
    target: progress.target,
    mode: progress.mode,
    dryRun: false,
    restamp: progress.options?.restamp ?? false,
    safetySnapshotId: progress.safetySnapshotId,
    topics,
    groups: progress.groups,
    records: progress.records,
    bytes: progress.bytes,
    durationMs: clock() - started,
    warnings: [
      ...progress.plan.warnings,
      ...restampWarning(progress.options?.restamp ?? false, progress.pastRetention ?? {}),
      ...(progress.warnings ?? []),
      ...Object.entries(progress.groups)
        .filter(([, g]) => g.status === 'skipped')
        .map(([group, g]) => `group ${group}: ${g.error}`),
    ],
  };
}

function restampWarning(restamp: boolean, past: Record<string, PastRetention>): string[] {
  if (!restamp) return [];
  const old = Object.values(past).reduce((n, p) => n + p.records, 0);
  return [
    `--restamp: every record has the restore's time as timestamp, its original in header ${RESTAMP_HEADER}${old > 0 ? ` (${old} of them were past their topic's retention)` : ''}; time-based lookups (offsetsForTimes) see the restore's time`,
  ];
}

/** What one run of a restore works with: the request, the chosen snapshot, the mapping and its identity. */
interface RestoreRun {
  deps: RestoreDeps;
  request: RestoreRequest;
  manifest: SnapshotManifest;
  mapping: Map<string, string>;
  id: string;
  log: Logger;
  clock: () => number;
  started: number;
  owner: string;
  outOfTime: () => boolean;
}

/** Runs a restore, or continues the one these arguments started; stops early (saving progress) near `deadline`. */
export async function runRestore(
  deps: RestoreDeps,
  request: RestoreRequest,
  options: { deadline?: number; verifiedSegments?: number; verification?: Verification } = {},
): Promise<RestoreResult> {
  const run = await openRun(deps, request, options.deadline);
  const existing = await deps.store.get(run.id);
  if (existing?.phase === 'complete' && Object.values(existing.groups).every((g) => g.status === 'committed'))
    return { status: 'complete', report: reportOf(existing, run.started, run.clock) };
  let progress: RestoreProgress;
  if (!existing || request.dryRun) {
    phaseStarts(run, 'plan');
    const plan = await planPhase(run, existing !== undefined);
    if (request.dryRun) return { status: 'complete', report: await dryRunReport(run, plan) };
    phaseStarts(run, 'verify');
    const verification = await verifyPhase(run, plan, startVerification(run, plan, options.verification));
    if (verification.segments < plan.topics.reduce((n, t) => n + t.segments.length, 0)) {
      run.log.info('restore paused while checking segments; the next run continues it', {
        verified: verification.segments,
      });
      return {
        status: 'in-progress',
        restoreId: run.id,
        phase: 'verify',
        verifiedSegments: verification.segments,
        verification,
        records: 0,
        totalRecords: plan.records,
      };
    }
    refusePastRetention(run, plan, verification);
    progress = await createProgress(run, plan, verification);
  } else {
    progress = await claimProgress(run);
  }
  return continueRestore(run, progress);
}

/** Checks the request, picks the snapshot and maps its topics: what identifies the restore. */
async function openRun(deps: RestoreDeps, request: RestoreRequest, deadline?: number): Promise<RestoreRun> {
  const clock = deps.clock ?? Date.now;
  if (!['new', 'append', 'replace'].includes(request.mode))
    throw new InputError(`expected --mode new, append or replace, got ${JSON.stringify(request.mode)}`);
  if (request.mode === 'replace' && !request.yes && !request.dryRun)
    throw new InputError(
      '--mode replace deletes and recreates the target topics: add --yes to confirm (a safety snapshot of them is taken first unless --no-safety-snapshot)',
    );
  if (request.retentionMs !== undefined) {
    try {
      parseRetentionMs(request.retentionMs);
    } catch (error) {
      throw new InputError((error as Error).message);
    }
  }
  const manifest = await chooseSnapshot(deps, request);
  let mapping: Map<string, string>;
  try {
    mapping = mapTopics(Object.keys(manifest.topics), {
      ...(request.topics !== undefined ? { topics: request.topics } : {}),
      ...(request.rename !== undefined ? { rename: request.rename } : {}),
      ...(request.topicPrefix !== undefined ? { topicPrefix: request.topicPrefix } : {}),
    });
  } catch (error) {
    throw new InputError((error as Error).message);
  }
  const id = restoreId({
    snapshotId: manifest.snapshotId,
    target: deps.target.label,
    mapping,
    mode: request.mode,
  });
  return {
    deps,
    request,
    manifest,
    mapping,
    id,
    log: deps.logger.child({ operation: 'restore', restoreId: id, snapshotId: manifest.snapshotId }),
    clock,
    started: clock(),
    owner: deps.owner ?? `${hostname()}/${process.pid}`,
    outOfTime: () => deadline !== undefined && clock() > deadline - DEADLINE_MARGIN_MS,
  };
}

/** The log line each phase starts with (a status line, or a test killing the restore in a phase, reads it). */
function phaseStarts(run: RestoreRun, phase: RestorePhase, context: Record<string, unknown> = {}): void {
  run.log.info('restore phase', { phase, ...context });
}

/** plan: each target topic's state and configs, then planRestore (nothing is written). */
async function planPhase(run: RestoreRun, resumed: boolean): Promise<RestorePlan> {
  const { deps, mapping } = run;
  const listed = new Set(await deps.target.admin.listTopics());
  const present = [...mapping.values()].filter((t) => listed.has(t));
  const described = present.length > 0 ? await deps.target.admin.describeTopics(present) : [];
  const targets = new Map<string, TargetTopicState>();
  for (const target of present) {
    const d = described.find((x) => x.name === target);
    const offsets = await deps.target.reader.offsets(target);
    const configs: Record<string, string> = {};
    for (const [name, c] of Object.entries(d?.configs ?? {})) if (c.value !== null) configs[name] = c.value;
    targets.set(target, {
      exists: true,
      partitions: d?.partitions ?? offsets.length,
      records: offsets.reduce((n, o) => n + Math.max(0, o.highWatermark - o.logStart), 0),
      configs,
    });
  }
  try {
    return planRestore({
      manifest: run.manifest,
      mapping,
      mode: run.request.mode,
      targets,
      targetBrokers: await deps.target.admin.brokerCount(),
      resumed,
      ...(run.request.retentionMs !== undefined ? { retentionMs: run.request.retentionMs } : {}),
    });
  } catch (error) {
    throw new InputError((error as Error).message);
  }
}

/** A fresh count, or the one an earlier invocation left (when it counted against the same retentions). */
function startVerification(run: RestoreRun, plan: RestorePlan, previous?: Verification): Verification {
  const same =
    previous !== undefined &&
    plan.topics.length === Object.keys(previous.topics).length &&
    plan.topics.every((t) => previous.topics[t.target]?.retentionMs === t.retention.retentionMs);
  if (same) return previous;
  return {
    segments: 0,
    asOf: run.clock(),
    topics: Object.fromEntries(
      plan.topics.map((t) => [
        t.target,
        { retentionMs: t.retention.retentionMs, records: 0, oldestTimestamp: null },
      ]),
    ),
  };
}

/**
 * verify: reads every segment the restore needs (all of them, or with `only`, those of some topics), checks
 * its checksum and counts the records past their target's retention. Names each bad segment.
 */
async function verifyPhase(
  run: RestoreRun,
  plan: RestorePlan,
  verification: Verification,
  only: (t: TopicPlan) => boolean = () => true,
): Promise<Verification> {
  const refs = plan.topics.filter(only).flatMap((t) => t.segments.map((ref) => ({ ref, target: t.target })));
  const from = verification.segments;
  let checked = from;
  const bad: string[] = [];
  // Downloaded, checked and decoded ahead; counted here, in order, so that a run that stops counts no
  // segment twice. Every segment is decoded, not only checked: a segment whose bytes match their checksum
  // but do not decode (written wrong) must stop the restore here, before anything is written.
  type Checked = { target: string; records: SourceRecord[] } | { bad: string };
  const check = async ({ ref, target }: { ref: SegmentRef; target: string }): Promise<Checked> => {
    try {
      const records = await readSegment(run.deps.objects, ref);
      const countProblem = recordCountProblem(ref, records);
      return countProblem
        ? { bad: `${run.deps.objects.url(ref.key)}: ${countProblem}` }
        : { target, records };
    } catch (error) {
      return {
        bad: `${run.deps.objects.url(ref.key)}: ${error instanceof NotFoundError ? 'missing' : (error as Error).message}`,
      };
    }
  };
  for await (const result of loadedAhead(refs.slice(from), run.deps.prefetch, check)) {
    // At least one segment per run, so that a continued check always finishes.
    if (checked > from && run.outOfTime() && bad.length === 0) break;
    if ('bad' in result) bad.push(result.bad);
    else {
      const counted = verification.topics[result.target]!;
      countPastRetention(result.records, counted.retentionMs, verification.asOf, counted);
    }
    checked++;
    run.deps.onProgress?.({
      phase: 'verify',
      done: checked,
      total: refs.length,
      records: 0,
      totalRecords: 0,
      bytes: 0,
    });
  }
  verification.segments = checked;
  if (bad.length > 0)
    throw new KdrError(
      'INTEGRITY_FAILED',
      `the snapshot cannot be restored, ${bad.length} segment(s) are bad (nothing was written): ${bad.join('; ')}`,
      { details: { badSegments: bad } },
    );
  return verification;
}

function retentionProblems(plan: RestorePlan, verification: Verification): string[] {
  return plan.topics
    .map((t) =>
      pastRetentionProblem(t.target, t.retention, verification.topics[t.target]!, verification.asOf),
    )
    .filter((p): p is string => p !== null);
}

/** Records already past their target's retention stop the restore before anything is written (unless --restamp). */
function refusePastRetention(run: RestoreRun, plan: RestorePlan, verification: Verification): void {
  if (run.request.restamp) return;
  const problems = retentionProblems(plan, verification);
  if (problems.length === 0) return;
  throw new InputError(`${problems.join('\n')}\n(nothing was written)`, {
    details: { pastRetention: pastRetentionOf(plan, verification) },
  });
}

function pastRetentionOf(plan: RestorePlan, verification: Verification): Record<string, TopicPastRetention> {
  return Object.fromEntries(
    plan.topics.map((t) => {
      const counted = verification.topics[t.target]!;
      return [
        t.target,
        {
          records: counted.records,
          oldestTimestamp: counted.oldestTimestamp,
          retentionMs: t.retention.retentionMs,
          retentionFrom: t.retention.from,
          asOf: new Date(verification.asOf).toISOString(),
        },
      ];
    }),
  );
}

async function createProgress(run: RestoreRun, plan: RestorePlan, verification: Verification) {
  const progress: RestoreProgress = {
    restoreId: run.id,
    generation: 1,
    phase: 'safety-snapshot',
    snapshotId: run.manifest.snapshotId,
    snapshotCluster: run.manifest.cluster,
    cutAt: run.manifest.cutAt,
    target: run.deps.target.label,
    mode: run.request.mode,
    options: optionsOf(run.request),
    plan: { ...plan, topics: plan.topics.map(({ segments: _segments, ...t }) => t) },
    pastRetention: pastRetentionOf(plan, verification),
    safetySnapshotId: null,
    prepared: [],
    done: {},
    scanFrom: {},
    sourceStats: {},
    targetStats: {},
    landings: {},
    records: 0,
    bytes: 0,
    groups: {},
    warnings: [],
    startedAt: new Date(run.started).toISOString(),
    finishedAt: null,
    owner: run.owner,
  };
  await run.deps.store.create(progress);
  run.log.info('restore started', {
    target: run.deps.target.label,
    mode: run.request.mode,
    records: plan.records,
  });
  return progress;
}

const optionsOf = (r: RestoreRequest): RestoreOptions => ({
  restamp: Boolean(r.restamp),
  retentionMs: r.retentionMs ?? null,
});
const describeOptions = (o: RestoreOptions) =>
  [
    o.restamp ? '--restamp' : 'no --restamp',
    o.retentionMs === null ? 'no --retention-ms' : `--retention-ms ${o.retentionMs}`,
  ].join(', ');

/** Takes over a restore in progress; it continues with the options it was started with, never others. */
async function claimProgress(run: RestoreRun): Promise<RestoreProgress> {
  const progress = await run.deps.store.claim(run.id);
  const saved = progress.options ?? { restamp: false, retentionMs: null };
  const asked = optionsOf(run.request);
  if (saved.restamp !== asked.restamp || saved.retentionMs !== asked.retentionMs)
    throw new InputError(
      `restore ${run.id} was started with ${describeOptions(saved)} and is in phase ${progress.phase}: run it with the same options to continue it (got ${describeOptions(asked)})`,
    );
  // Progress saved before the phases had these names: 'prepare' held the safety snapshot and the topics.
  if ((progress.phase as string) === 'prepare') progress.phase = 'safety-snapshot';
  progress.owner = run.owner;
  run.log.info('continuing the restore in progress', { phase: progress.phase, records: progress.records });
  return progress;
}

/** The saved phases, each idempotent: a run killed anywhere is continued by the next from its saved phase. */
async function continueRestore(run: RestoreRun, state: RestoreProgress): Promise<RestoreResult> {
  const save = () => run.deps.store.save(state);
  const advance = async (phase: SavedPhase) => {
    state.phase = phase;
    await save();
    phaseStarts(run, phase);
  };
  phaseStarts(run, state.phase, { resumed: state.generation > 1 });
  if (state.phase === 'safety-snapshot') {
    await safetySnapshotPhase(run, state);
    await advance('prepare-topics');
  }
  if (state.phase === 'prepare-topics') {
    await prepareTopicsPhase(run, state);
    await advance('write');
  }
  const partitionCounts = new Map(state.plan.topics.map((t) => [t.source, t.sourcePartitions]));
  const tracker = new PositionTracker(run.manifest.groups, partitionCounts, state.landings);
  if (state.phase === 'write') {
    const paused = await writePhase(run, state, tracker);
    if (paused) return paused;
    await advance('groups');
  }
  // Also retried when a completed restore is run again after a group was skipped.
  if (state.phase === 'groups' || state.phase === 'complete') {
    await groupsPhase(run, state, tracker);
    state.finishedAt = new Date(run.clock()).toISOString();
    await advance('complete');
    run.log.info('restore complete', { records: state.records, groups: Object.keys(state.groups).length });
  }
  return { status: 'complete', report: reportOf(state, run.started, run.clock) };
}

/** safety-snapshot: (replace) a snapshot of the target topics about to be deleted, taken once. */
async function safetySnapshotPhase(run: RestoreRun, state: RestoreProgress): Promise<void> {
  const { deps } = run;
  if (state.mode !== 'replace' || !deps.safetySnapshot || !run.request.safetySnapshot) return;
  if (state.safetySnapshotId !== null || state.prepared.length > 0) return;
  const existing = new Set(await deps.target.admin.listTopics());
  const present = state.plan.topics.map((t) => t.target).filter((t) => existing.has(t));
  if (present.length === 0) return;
  state.safetySnapshotId = await takeSafetySnapshot(run, present);
  run.log.info('safety snapshot taken before replacing topics', { safetySnapshotId: state.safetySnapshotId });
  await deps.store.save(state);
}

/**
 * A safety snapshot killed with its restore holds the cluster's snapshot lease until the lease expires (its
 * owner is that dead process): wait for it, bounded, rather than fail the run that continues the restore.
 * The restore's own identity is offered as the snapshot's owner, so that a snapshot source that uses it
 * lets the continuing run take its own lease back at once.
 */
async function takeSafetySnapshot(run: RestoreRun, topics: string[]): Promise<string> {
  const giveUpAt = run.clock() + SAFETY_SNAPSHOT_WAIT_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await run.deps.safetySnapshot!(topics, { owner: `restore/${run.id}` });
    } catch (error) {
      if (!isKdrError(error) || error.code !== 'STATE_CONFLICT' || run.clock() > giveUpAt || run.outOfTime())
        throw error;
      run.log.info('waiting to take the safety snapshot', { attempt, reason: (error as Error).message });
      await sleep(Math.min(5_000, 500 * attempt));
    }
  }
}

/** prepare-topics: (re)creates the target topics or changes the configs asked for; each topic once. */
async function prepareTopicsPhase(run: RestoreRun, state: RestoreProgress): Promise<void> {
  const { admin, reader } = run.deps.target;
  for (const t of state.plan.topics) {
    if (state.prepared.includes(t.target)) continue;
    if (t.action === 'recreate' && (await admin.listTopics()).includes(t.target))
      await admin.deleteTopic(t.target);
    if (t.action === 'recreate' || t.action === 'create')
      await admin.createTopic(t.target, t.targetPartitions, t.replicationFactor, withHeadroom(t.configs));
    else if (Object.keys(t.alter ?? {}).length > 0) await admin.alterConfigs(t.target, t.alter);
    for (const o of await reader.offsets(t.target))
      state.scanFrom[`${t.target}/${o.partition}`] = o.lastStable;
    state.prepared.push(t.target);
    await run.deps.store.save(state);
  }
}

/** write: replays every partition in order, in transactions; returns the paused result near the deadline. */
async function writePhase(
  run: RestoreRun,
  state: RestoreProgress,
  tracker: PositionTracker,
): Promise<RestoreResult | null> {
  const { deps } = run;
  const writer = await deps.target.writers.openWithId(restoreTransactionalId(run.id), { restoreId: run.id });
  try {
    // The writer is open, so no older process of this restore can commit any more: read what arrived.
    for (const t of state.plan.topics) await recoverTail(deps, state, t, tracker);
    await deps.store.save(state);
    const described = await deps.target.admin.describeTopics(state.plan.topics.map((t) => t.target));
    for (const t of state.plan.topics) {
      const configured = described.find((d) => d.name === t.target)?.configs['max.message.bytes']?.value;
      const maxBytes = Math.min(
        deps.maxRequestBytes,
        Number(configured ?? DEFAULT_MAX_MESSAGE_BYTES) - BATCH_OVERHEAD_BYTES,
      );
      if (!(await writeTopic(run, state, writer, t, maxBytes, tracker))) {
        run.log.info('restore paused; the next run continues it', { records: state.records });
        return {
          status: 'in-progress',
          restoreId: run.id,
          phase: 'write',
          records: state.records,
          totalRecords: state.plan.records,
        };
      }
    }
  } finally {
    await writer.close();
  }
  // Group positions and the report count on what read_committed consumers see: wait for the markers.
  for (const [key, next] of Object.entries(state.scanFrom)) {
    const cut = key.lastIndexOf('/');
    await waitVisible(
      deps.target.reader,
      { topic: key.slice(0, cut), partition: Number(key.slice(cut + 1)) },
      next,
    );
  }
  return null;
}

/**
 * The records of one topic not written yet, chunk by chunk, progress saved after each; false: out of time.
 * A chunk's save runs while the next chunk is written: the saved progress only shortens the tail scan of a
 * resumed run (recoverTail finds what was committed after it), so it may lag one transaction. Saves stay in
 * order, and the last is awaited before this returns.
 */
async function writeTopic(
  run: RestoreRun,
  state: RestoreProgress,
  writer: MultiPartitionWriter,
  t: TopicPlanSaved,
  maxBytes: number,
  tracker: PositionTracker,
): Promise<boolean> {
  const { deps } = run;
  const pending = run.manifest.segments
    .filter((s) => s.topic === t.source && s.lastOffset > (state.done[`${t.source}/${s.partition}`] ?? -1))
    .sort((a, b) => a.partition - b.partition || a.firstOffset - b.firstOffset);
  const restamp = state.options?.restamp ?? false;
  const load = async (ref: SegmentRef) => ({ ref, records: await readSegment(deps.objects, ref) });
  let saving: Promise<void> = Promise.resolve();
  const saveAfter = async () => {
    await saving;
    // A copy: the next chunk changes the state while this save is on its way.
    saving = deps.store.save(structuredClone(state));
    saving.catch(() => {}); // seen where it is awaited: before the next save, or at the end
  };
  let finished = true;
  try {
    for await (const { ref, records } of loadedAhead(pending, deps.prefetch, load)) {
      finished = await writeSegment(ref, records);
      if (!finished) break;
    }
  } catch (error) {
    await saving.catch(() => {}); // the failure that stopped the writing is the one to report
    throw error;
  }
  await saving;
  return finished;

  async function writeSegment(ref: SegmentRef, records: SourceRecord[]): Promise<boolean> {
    const key = `${t.source}/${ref.partition}`;
    const fresh = records.filter((r) => r.offset > (state.done[key] ?? -1));
    for (let i = 0; i < fresh.length; i += deps.maxTransactionRecords) {
      const chunk = fresh.slice(i, i + deps.maxTransactionRecords);
      const stamp = restamp ? run.clock() : null;
      await writeChunk(writer, state, t, { partition: ref.partition, chunk, maxBytes, stamp }, tracker);
      await saveAfter();
      deps.onProgress?.({
        phase: 'write',
        done: state.records,
        total: state.plan.records,
        records: state.records,
        totalRecords: state.plan.records,
        bytes: state.bytes,
      });
      if (run.outOfTime()) return false;
    }
    return true;
  }
}

/** groups: commits each group's translated position (empty groups only); a committed group is never redone. */
async function groupsPhase(run: RestoreRun, state: RestoreProgress, tracker: PositionTracker): Promise<void> {
  const ends = new Map<string, number[]>();
  for (const t of state.plan.topics)
    ends.set(
      t.target,
      (await run.deps.target.reader.offsets(t.target)).map((o) => o.lastStable),
    );
  for (const group of state.plan.groups) {
    if (state.groups[group]?.status === 'committed') continue;
    state.groups[group] = await restoreGroup(run.deps, state, run.manifest, group, tracker.landings, ends);
    await run.deps.store.save(state);
  }
}

/** Topics kdr creates take the snapshot's record size limit plus room for the provenance header. */
function withHeadroom(configs: Record<string, string>): Record<string, string> {
  const limit = Number(configs['max.message.bytes'] ?? DEFAULT_MAX_MESSAGE_BYTES);
  return { ...configs, 'max.message.bytes': String(limit + PROVENANCE_HEADROOM_BYTES) };
}

/**
 * Where the tail scan of a target partition starts: the saved position, clamped to the partition's current
 * log start (retention or DeleteRecords may have moved it since); what left the log unread is a warning.
 */
function clampedScanStart(state: RestoreProgress, key: string, logStart: number): number {
  const saved = state.scanFrom[key] ?? logStart;
  if (saved >= logStart) return saved;
  const warning = `${key}: offsets ${saved}-${logStart - 1} left the target log (retention or DeleteRecords) before this resumed restore read them back; snapshot records there that the saved progress did not count are written again`;
  state.warnings = [...(state.warnings ?? []).filter((w) => w !== warning), warning];
  return logStart;
}

/** Records of this restore found after the saved progress: committed by a process that died before saving. */
async function recoverTail(
  deps: RestoreDeps,
  state: RestoreProgress,
  t: TopicPlanSaved,
  tracker: PositionTracker,
): Promise<void> {
  const offsets = await deps.target.reader.offsets(t.target);
  // A transaction of a re-partitioned topic spans target partitions: take the highest offset per source
  // partition over all of them, after the scan.
  const highest = new Map<string, number>();
  for (const o of offsets) {
    const key = `${t.target}/${o.partition}`;
    const from = clampedScanStart(state, key, o.logStart);
    const tp = { topic: t.target, partition: o.partition };
    for await (const records of deps.target.reader.readRange(tp, from, o.lastStable)) {
      for (const record of records) {
        const origin = originOfRestored(record.headers);
        if (!origin || origin.snapshotId !== state.snapshotId || origin.topic !== t.source) continue;
        const sourceKey = `${t.source}/${origin.partition}`;
        highest.set(sourceKey, Math.max(highest.get(sourceKey) ?? -1, origin.offset));
        tracker.written(t.source, origin.partition, origin.offset, o.partition, record.offset);
        statsAdd(state.sourceStats, sourceKey, origin.offset);
        statsAdd(state.targetStats, key, record.offset);
        state.records++;
      }
    }
    state.scanFrom[key] = Math.max(from, o.lastStable);
  }
  for (const [sourceKey, offset] of highest)
    state.done[sourceKey] = Math.max(state.done[sourceKey] ?? -1, offset);
  if (highest.size > 0)
    deps.logger.info(
      'found restored records the saved progress did not know of (a run died after committing them)',
      {
        restoreId: state.restoreId,
        topic: t.target,
        partitions: [...highest.keys()],
      },
    );
}

/** A snapshot record as the restore writes it: its place in the snapshot in `kdr.snapshot`; restamped if asked. */
function outgoingOf(
  record: SourceRecord,
  origin: { snapshotId: string; topic: string; partition: number },
  stamp: number | null,
): OutgoingRecord {
  const headers = [...record.headers];
  if (stamp !== null) headers.push({ key: RESTAMP_HEADER, value: Buffer.from(String(record.timestamp)) });
  headers.push({
    key: RESTORE_HEADER,
    value: Buffer.from(formatOrigin({ ...origin, offset: record.offset })),
  });
  return {
    sourceOffset: record.offset,
    timestamp: stamp ?? record.timestamp,
    key: record.key,
    value: record.value,
    headers,
  };
}

/** Produce requests of at most `maxBytes` each (a record bigger than that goes alone). */
function requestsOf(records: readonly OutgoingRecord[], maxBytes: number): OutgoingRecord[][] {
  const requests: OutgoingRecord[][] = [];
  let request: OutgoingRecord[] = [];
  let bytes = 0;
  for (const outgoing of records) {
    const size = recordSize(outgoing);
    if (request.length > 0 && bytes + size > maxBytes) {
      requests.push(request);
      request = [];
      bytes = 0;
    }
    request.push(outgoing);
    bytes += size;
  }
  if (request.length > 0) requests.push(request);
  return requests;
}

/** One transaction: a chunk of one snapshot partition, spread over target partitions when re-partitioned. */
async function writeChunk(
  writer: MultiPartitionWriter,
  state: RestoreProgress,
  t: TopicPlanSaved,
  w: { partition: number; chunk: SourceRecord[]; maxBytes: number; stamp: number | null },
  tracker: PositionTracker,
): Promise<void> {
  const origin = { snapshotId: state.snapshotId, topic: t.source, partition: w.partition };
  const byTarget = new Map<number, { record: SourceRecord; outgoing: OutgoingRecord }[]>();
  for (const record of w.chunk) {
    const tp = t.repartitioned ? targetPartition(record, w.partition, t.targetPartitions) : w.partition;
    const list = byTarget.get(tp) ?? [];
    list.push({ record, outgoing: outgoingOf(record, origin, w.stamp) });
    byTarget.set(tp, list);
  }
  const targets = [...byTarget.keys()].sort((a, b) => a - b);
  const batches: PartitionBatch[] = targets.map((tp) => ({
    target: { topic: t.target, partition: tp },
    requests: requestsOf(
      byTarget.get(tp)!.map((x) => x.outgoing),
      w.maxBytes,
    ),
  }));
  const offsets = await writer.writeMany(batches);
  targets.forEach((tp, i) => {
    const at = offsets[i]!;
    byTarget.get(tp)!.forEach(({ record }, j) => {
      tracker.written(t.source, w.partition, record.offset, tp, at[j]!);
      statsAdd(state.targetStats, `${t.target}/${tp}`, at[j]!);
      statsAdd(state.sourceStats, `${t.source}/${w.partition}`, record.offset);
      state.bytes += recordSize(record);
    });
    state.scanFrom[`${t.target}/${tp}`] = at.at(-1)! + 1;
  });
  state.records += w.chunk.length;
  state.done[`${t.source}/${w.partition}`] = w.chunk.at(-1)!.offset;
}

async function restoreGroup(
  deps: RestoreDeps,
  state: RestoreProgress,
  manifest: SnapshotManifest,
  group: string,
  landings: Record<string, Landing>,
  ends: Map<string, number[]>,
): Promise<GroupResult> {
  const offsets: GroupResult['offsets'] = [];
  for (const t of state.plan.topics) {
    const positions = manifest.groups[group]?.[t.source];
    if (!positions) continue;
    for (const o of groupTargetOffsets({ positions, topic: t, landings, ends: ends.get(t.target)! }))
      offsets.push({ topic: t.target, ...o });
  }
  const groupState = await deps.target.admin.groupState(group);
  if (groupState !== 'Empty' && groupState !== 'Dead') {
    return {
      status: 'skipped',
      offsets,
      error: `group ${group} has active members on ${state.target} (state ${groupState}): nothing was committed for it; stop its consumers and run the same restore again to commit it`,
    };
  }
  try {
    await deps.target.admin.commitOffsets(group, offsets);
  } catch (error) {
    if (isKdrError(error) && error.retryable) throw error;
    return {
      status: 'skipped',
      offsets,
      error: `committing group ${group} failed: ${(error as Error).message}`,
    };
  }
  deps.logger.info('group offsets restored', {
    restoreId: state.restoreId,
    group,
    partitions: offsets.length,
  });
  return { status: 'committed', offsets };
}

/**
 * --dry-run: the plan, with the records of each topic already past its retention counted exactly (the
 * segments of topics with a time retention are read; nothing is written).
 */
async function dryRunReport(run: RestoreRun, plan: RestorePlan): Promise<RestoreReport> {
  const { manifest, request } = run;
  const verification = await verifyPhase(
    { ...run, outOfTime: () => false },
    plan,
    startVerification(run, plan),
    (t) => t.retention.retentionMs !== null,
  );
  const past = pastRetentionOf(plan, verification);
  const problems = retentionProblems(plan, verification);
  const groups: RestoreReport['groups'] = {};
  for (const group of plan.groups) {
    const positions: Record<string, Record<string, number>> = {};
    for (const t of plan.topics) {
      const p = manifest.groups[group]?.[t.source];
      if (p) positions[t.target] = p;
    }
    groups[group] = { status: 'planned', positions };
  }
  return {
    restoreId: run.id,
    snapshotId: manifest.snapshotId,
    snapshotCluster: manifest.cluster,
    cutAt: manifest.cutAt,
    target: run.deps.target.label,
    mode: request.mode,
    dryRun: true,
    restamp: Boolean(request.restamp),
    safetySnapshotId: null,
    topics: plan.topics.map((t) => ({
      source: t.source,
      target: t.target,
      action: t.action,
      partitions: t.targetPartitions,
      repartitioned: t.repartitioned,
      records: t.records,
      bytes: t.bytes,
      pastRetention: past[t.target]!,
    })),
    groups,
    records: plan.records,
    bytes: plan.bytes,
    durationMs: run.clock() - run.started,
    warnings: [
      ...plan.warnings,
      ...(request.mode === 'replace' && request.safetySnapshot
        ? ['replace: a safety snapshot of the existing target topics is taken before they are deleted']
        : []),
      ...(request.restamp
        ? restampWarning(true, past)
        : problems.map((p) => `the restore would refuse to start: ${p}`)),
    ],
  };
}
