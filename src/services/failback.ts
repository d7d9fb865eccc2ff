import { describeConflict } from '../core/control.ts';
import { isMirrorGroup } from '../core/groups.ts';
import { firstAtOrAfterStandby, translateCommitted } from '../core/offsetMap.ts';
import type { OperationPhase } from '../core/operation.ts';
import type { SourceRecord, TopicPartition } from '../core/records.ts';
import { encodeSegment } from '../core/segment.ts';
import { describeError, StateError, TimeoutError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GroupAdmin, PartitionReader, TopicAdmin } from '../ports/kafka.ts';
import type { ObjectStore } from '../ports/objectStore.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import type { StateStore } from '../ports/stateStore.ts';
import {
  copiedRangesOf,
  describeGap,
  GapLog,
  type LogStartGap,
  previousObservations,
  readFromLogStart,
  withProof,
} from './checkpoint.ts';
import { drain, type GroupMove, mirroredPartitions } from './failover.ts';
import type { MirrorEngine } from './mirror.ts';
import {
  type AbortReport,
  abortOperation,
  advancePhase as advance,
  leaseOptionsOf,
  namedOperation,
  OperationLease,
  type OperationOutcome,
  type PhaseResult,
  type PhaseRun,
  reportOf,
  runOperation,
  type StableState,
  saveData as save,
  savedData as saved,
} from './operationLease.ts';
import { verifiedCopies } from './provenance.ts';

/**
 * Failback: make the old primary active again without losing anything silently.
 *
 *   1. records on the old primary that never reached the standby (after the last forward-mirrored
 *      offset) are exported to the bucket in the segment format, with a manifest, and reported;
 *   2. what the standby got since the failover is mirrored back to the primary (the reverse direction,
 *      exactly once; records that came from the primary are skipped by their kdr.origin: no cycle);
 *   3. every consumer group's standby position is translated back to the primary and committed there;
 *   4. the primary becomes active again (epoch + 1) and the forward mirror resumes.
 *
 * Applications must have stopped writing to the standby: the reverse mirror drains to zero lag within
 * the timeout, or the failback aborts back to FAILED_OVER.
 */

export interface FailbackDeps {
  pair: string;
  primaryAlias: string;
  standbyAlias: string;
  stateStore: StateStore;
  primaryAdmin: TopicAdmin & GroupAdmin;
  standbyAdmin: TopicAdmin & GroupAdmin;
  primaryReader: PartitionReader;
  standbyReader: PartitionReader;
  /** primary → standby map (what the primary had mirrored before the failover). */
  forwardMap: OffsetMapStore;
  /** standby → primary map and engine. */
  reverseMap: OffsetMapStore;
  reverseEngine: MirrorEngine;
  objectStore: ObjectStore;
  selectTopic: (topic: string) => boolean;
  selectGroup: (group: string) => boolean;
  mirrorGroups: string[];
  startMirror?: () => Promise<string[]>;
  logger: Logger;
  owner?: string;
  leaseMs?: number;
  clock?: () => number;
  onPhase?: (phase: string) => Promise<void> | void;
}

export interface ExportedPartition {
  topic: string;
  partition: number;
  records: number;
  firstOffset: number;
  lastOffset: number;
  objects: { key: string; sha256: string; records: number; bytes: number }[];
}

export interface FailbackReport {
  pair: string;
  epoch: number;
  from: string;
  to: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /**
   * `gaps`: ranges of the primary deleted (retention, DeleteRecords) after the last forward-mirrored
   * offset before the export could read them: on neither cluster, nor in the export.
   */
  exported: {
    records: number;
    bytes: number;
    location: string | null;
    partitions: ExportedPartition[];
    gaps: LogStartGap[];
  };
  mirroredBack: number;
  /** Ranges the standby deleted before they were mirrored back: never on the primary. */
  mirroredBackGaps: LogStartGap[];
  groups: Record<string, GroupMove[]>;
  /**
   * Per group and partition, the exported outage records (on the primary, never on the standby) the
   * group will not read: it was placed after them. Replay them from the primary offsets given, or fail
   * back with `--read-outage` to place groups before them.
   */
  unread: UnreadRange[];
  /**
   * Records written to the standby after the failback's last copy (a writer that kept writing after the
   * primary became active): standby offsets [from, to), `records` of them, only on the standby.
   */
  leftOnStandby: { topic: string; partition: number; from: number; to: number; records: number }[];
  operationId: string;
  mirrorStarted: string[];
  warnings: string[];
}

export interface UnreadRange {
  group: string;
  topic: string;
  partition: number;
  /** Primary offsets [from, to] of the outage records, and where the group was placed. */
  from: number;
  to: number;
  records: number;
  placedAt: number;
}

const SEGMENT_RECORDS = 10_000;
/** An export segment's bytes, held in memory before it is uploaded. */
const SEGMENT_BYTES = 8 * 1024 * 1024;

/** The primary position holding the same next record as standby offset `standbyOffset`. */
export async function translateBack(
  deps: Pick<FailbackDeps, 'forwardMap' | 'reverseMap' | 'primaryReader'>,
  tp: TopicPartition,
  standbyOffset: number,
): Promise<{ primaryOffset: number; exact: boolean }> {
  // A record the primary had and mirrored (forward map, by standby offset), or one the standby got and
  // mirrored back (reverse map, by source offset): whichever comes first on the standby.
  const forward = firstAtOrAfterStandby(
    await deps.forwardMap.coveringStandby(tp, standbyOffset),
    standbyOffset,
  );
  const reverse = translateCommitted(await deps.reverseMap.covering(tp, standbyOffset), standbyOffset, null);
  const candidates: { standby: number; primary: number }[] = [];
  if (forward) candidates.push({ standby: forward.standby, primary: forward.source });
  if (reverse.kind === 'exact')
    candidates.push({ standby: reverse.mirroredSource, primary: reverse.standbyOffset });
  candidates.sort((a, b) => a.standby - b.standby);
  if (candidates[0]) return { primaryOffset: candidates[0].primary, exact: true };
  const [end] = await deps.primaryReader.offsets(tp.topic, [tp.partition]);
  return { primaryOffset: end!.lastStable, exact: false };
}

/**
 * Exports the primary's records after the last forward-mirrored offset; from the partition's current log
 * start when that is later (what it passed is a gap).
 */
async function exportUnmirrored(
  deps: FailbackDeps,
  partitions: TopicPartition[],
  prefix: string,
  gaps: GapLog,
): Promise<ExportedPartition[]> {
  const clock = deps.clock ?? Date.now;
  const exported: ExportedPartition[] = [];
  for (const tp of partitions) {
    const [offsets] = await deps.primaryReader.offsets(tp.topic, [tp.partition]);
    const latest = await deps.forwardMap.latest(tp);
    const from = latest ? latest.lastSource + 1 : offsets!.logStart;
    if (from >= offsets!.lastStable) continue;
    const part: ExportedPartition = {
      topic: tp.topic,
      partition: tp.partition,
      records: 0,
      firstOffset: -1,
      lastOffset: -1,
      objects: [],
    };
    let pending: SourceRecord[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pending.length === 0) return;
      pendingBytes = 0;
      const segment = await encodeSegment(pending);
      const key = `${prefix}/${tp.topic}/${tp.partition}/${String(segment.firstOffset).padStart(20, '0')}-${String(segment.lastOffset).padStart(20, '0')}.kdrseg`;
      await deps.objectStore.put(key, segment.data, { contentType: 'application/octet-stream' });
      part.objects.push({ key, sha256: segment.sha256, records: segment.records, bytes: segment.bytes });
      part.records += segment.records;
      if (part.firstOffset < 0) part.firstOffset = segment.firstOffset;
      part.lastOffset = segment.lastOffset;
      pending = [];
    };
    for await (const records of readFromLogStart(deps.primaryReader, tp, from, offsets!.lastStable, {
      logStart: offsets!.logStart,
      onGap: (gap) => gaps.add(gap),
      clock,
    })) {
      pending.push(...records);
      pendingBytes += records.reduce((n, r) => n + (r.key?.length ?? 0) + (r.value?.length ?? 0) + 64, 0);
      if (pending.length >= SEGMENT_RECORDS || pendingBytes >= SEGMENT_BYTES) await flush();
    }
    await flush();
    if (part.records > 0) exported.push(part);
  }
  return exported;
}

export type FailbackOutcome = OperationOutcome<FailbackReport>;

export interface FailbackOptions {
  timeoutMs: number;
  /** Place moved groups before the outage records (they read them, then re-read the copies after them). */
  readOutage?: boolean;
  runDeadline?: number;
  operationId?: string;
}

interface FailbackRun extends PhaseRun {
  deps: FailbackDeps;
}

interface ExportData {
  prefix: string;
  partitions: ExportedPartition[];
  gaps: LogStartGap[];
  location: string | null;
}

interface DrainData {
  drained: number;
  gaps: LogStartGap[];
}

/**
 * Starts a failback, or resumes the one in progress, and runs its phases until done or this run's
 * deadline. A failure before the flip aborts back to FAILED_OVER; after it the operation waits to be
 * resumed (the primary is active).
 */
export async function runFailback(deps: FailbackDeps, options: FailbackOptions): Promise<FailbackOutcome> {
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ pair: deps.pair, operation: 'failback' });
  const lease = await acquireFailback(deps, options, log);
  if (!(lease instanceof OperationLease)) return lease;
  const run: FailbackRun = {
    deps,
    lease,
    log,
    clock,
    runDeadline: options.runDeadline,
    stateStore: deps.stateStore,
  };
  return runOperation<FailbackReport, FailbackRun>(run, FAILBACK_PHASE_RUNNERS, deps, stableOf(deps));
}

/** The report of a failback run to its end (the CLI, tests). */
export async function failback(deps: FailbackDeps, options: FailbackOptions): Promise<FailbackReport> {
  return reportOf(await runFailback(deps, options));
}

async function acquireFailback(
  deps: FailbackDeps,
  options: FailbackOptions,
  log: Logger,
): Promise<OperationLease | FailbackOutcome> {
  const control = await deps.stateStore.getControl();
  const done = await namedOperation<FailbackReport>(deps, control, 'failback', options.operationId);
  if (done) return done;
  const op = control.operation;
  if (op?.kind === 'failback' && !op.outcome) return OperationLease.claim(leaseOptionsOf(deps, log), control);
  if (control.state !== 'FAILED_OVER' || control.activeCluster !== deps.standbyAlias) {
    throw new StateError('STATE_CONFLICT', describeConflict(control, 'FAILING_BACK'), {
      details: { pair: deps.pair, epoch: control.epoch, state: control.state },
    });
  }
  const lease = await OperationLease.begin(
    leaseOptionsOf(deps, log),
    control,
    { state: 'FAILING_BACK', activeCluster: deps.standbyAlias, reason: 'failback' },
    {
      kind: 'failback',
      phase: 'export',
      timeoutMs: options.timeoutMs,
      ...(options.readOutage ? { readOutage: true } : {}),
    },
  );
  log.info('failing back', { operationId: lease.operation.id, epoch: lease.control.epoch });
  return lease;
}

const stableOf = (deps: Pick<FailbackDeps, 'standbyAlias'>): StableState => ({
  state: 'FAILED_OVER',
  activeCluster: deps.standbyAlias,
});

/** `kdr failback --abort`: back to FAILED_OVER while the primary is not yet active again. */
export function abortFailback(
  deps: Pick<FailbackDeps, 'stateStore' | 'standbyAlias' | 'pair' | 'owner' | 'logger'>,
): Promise<AbortReport> {
  return abortOperation(deps, 'failback', stableOf(deps));
}

const FAILBACK_PHASE_RUNNERS = {
  export: exportPhase,
  drain: (run: FailbackRun) => drainBackPhase(run, 'drain'),
  groups: groupsBackPhase,
  redrain: (run: FailbackRun) => drainBackPhase(run, 'redrain'),
  flip: flipBackPhase,
  'late-writes': lateWritesPhase,
  'start-mirror': startMirrorPhase,
} satisfies Partial<Record<OperationPhase, (run: FailbackRun) => Promise<PhaseResult>>>;

/** What the primary has that the standby never got: exported to the bucket and reported, never dropped. */
async function exportPhase(run: FailbackRun): Promise<PhaseResult> {
  const { deps, lease, clock } = run;
  const partitions = await mirroredPartitions(deps.standbyAdmin, deps.selectTopic);
  const onPrimary = new Set(await deps.primaryAdmin.listTopics());
  const prefix = `failback/${deps.pair}/${lease.operation.id}`;
  const found = new GapLog();
  const exported = await exportUnmirrored(
    deps,
    partitions.filter((tp) => onPrimary.has(tp.topic)),
    prefix,
    found,
  );
  // The last checkpoint before the failover can prove that a gap held only transaction markers.
  const gaps = new GapLog();
  if (found.list().length > 0) {
    const earlier = await previousObservations(deps.stateStore, run.log);
    for (const gap of found.list()) gaps.add(withProof(gap, earlier));
  }
  for (const gap of gaps.list())
    if (!gap.markersOnly) run.log.warn(describeGap(gap, deps.primaryAlias), { gap });
  const records = exported.reduce((n, p) => n + p.records, 0);
  let location: string | null = null;
  if (records > 0) {
    const manifestKey = `${prefix}/manifest.json`;
    const manifest = {
      format: 'kdr-segment-v1',
      pair: deps.pair,
      operationId: lease.operation.id,
      cluster: deps.primaryAlias,
      createdAt: new Date(clock()).toISOString(),
      reason: 'records on the old primary after the last mirrored offset, never on the standby',
      records,
      partitions: exported,
      gaps: gaps.list(),
    };
    // The key is the operation's own: a resumed export writes the same objects again.
    await deps.objectStore.put(manifestKey, JSON.stringify(manifest, null, 2), {
      contentType: 'application/json',
    });
    location = deps.objectStore.url(manifestKey);
    run.log.warn('exported records the standby never got', { records, location });
  }
  await save(run, 'export', {
    prefix,
    partitions: exported,
    gaps: gaps.list(),
    location,
  } satisfies ExportData);
  return advance(run);
}

/**
 * What the standby got since the failover goes back to the primary, exactly once. 'redrain' runs after
 * the groups were placed: a record written to the standby after the first drain's last check lands after
 * every moved group's position, so the groups read it.
 */
async function drainBackPhase(
  run: FailbackRun,
  phase: 'drain' | 'redrain' | 'late-writes',
): Promise<PhaseResult> {
  const { deps, lease, clock } = run;
  const op = lease.operation;
  const partitions = await mirroredPartitions(deps.standbyAdmin, deps.selectTopic);
  const opDeadline = op.startedAt + op.timeoutMs;
  // After the flip the budget is short: applications write to the primary now.
  const own = phase === 'late-writes' ? clock() + 30_000 : opDeadline;
  const deadline = Math.min(own, run.runDeadline ?? Number.POSITIVE_INFINITY);
  const result = await drain(
    {
      engine: deps.reverseEngine,
      reader: deps.standbyReader,
      offsetMap: deps.reverseMap,
      counterpartMap: deps.forwardMap,
      ...(deps.standbyAdmin.topicIds
        ? { sourceAdmin: { topicIds: (t: string[]) => deps.standbyAdmin.topicIds!(t) } }
        : {}),
      route: { sourceAlias: deps.standbyAlias, targetAlias: deps.primaryAlias },
      // Before the last forward-mirrored record, the standby holds only copies of the primary's records.
      floor: async (tp) => {
        const forward = await deps.forwardMap.latest(tp);
        return forward ? forward.lastStandby + 1 : undefined;
      },
      check: () => lease.check(),
    },
    partitions,
    deadline,
    clock,
  );
  const earlier = await saved<DrainData>(run, 'mirrored-back');
  const gaps = new GapLog();
  for (const gap of [...(earlier?.gaps ?? []), ...result.gaps]) gaps.add(gap);
  for (const gap of result.gaps) run.log.warn(describeGap(gap, deps.standbyAlias), { gap });
  await save(run, 'mirrored-back', { drained: (earlier?.drained ?? 0) + result.drained, gaps: gaps.list() });
  if (phase === 'late-writes') return 'next';
  if (result.pending.length === 0) return advance(run);
  if (clock() <= opDeadline) return 'paused';
  throw new TimeoutError(
    `the standby's records did not all reach the primary within ${op.timeoutMs / 1000} s (${result.pending.length} partitions behind); are applications still writing to the standby?`,
  );
}

/**
 * Every group's standby position translated back and committed on the primary. A group placed after
 * the exported outage records is told which ones it will not read (or placed before them: readOutage).
 */
async function groupsBackPhase(run: FailbackRun): Promise<PhaseResult> {
  const { deps, lease } = run;
  const partitions = await mirroredPartitions(deps.standbyAdmin, deps.selectTopic);
  const topics = [...new Set(partitions.map((p) => p.topic))];
  const outage = new OutageRanges(deps);
  const groups: Record<string, GroupMove[]> = {};
  const unread: UnreadRange[] = [];
  const warnings: string[] = [];
  for (const group of (await deps.standbyAdmin.listGroups()).filter(
    (g) => deps.selectGroup(g) && !isMirrorGroup(g, deps.mirrorGroups),
  )) {
    await lease.verify();
    const committed = await deps.standbyAdmin.committedOffsets(group, topics);
    if (committed.length === 0) continue;
    const state = await deps.primaryAdmin.groupState(group);
    if (state !== 'Empty' && state !== 'Dead') {
      warnings.push(
        `group ${group} has running consumers on the primary (${state}); its offsets were not moved back`,
      );
      continue;
    }
    const moves: GroupMove[] = [];
    for (const c of committed) {
      const back = await translateBack(deps, c, c.offset);
      let primaryOffset = back.primaryOffset;
      // The primary's own records the standby never got, before where the group goes: the outage.
      const before = await outage.before(c, primaryOffset);
      if (before.length > 0 && lease.operation.readOutage) primaryOffset = before[0]!.from;
      else
        for (const r of before)
          unread.push({
            group,
            topic: c.topic,
            partition: c.partition,
            from: r.from,
            to: r.to - 1,
            records: r.to - r.from,
            placedAt: primaryOffset,
          });
      moves.push({
        topic: c.topic,
        partition: c.partition,
        sourceOffset: c.offset,
        standbyOffset: primaryOffset,
        exact: back.exact,
      });
    }
    await deps.primaryAdmin.commitOffsets(
      group,
      moves.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.standbyOffset })),
    );
    groups[group] = moves;
  }
  await save(run, 'groups', { moved: groups, unread, warnings });
  return advance(run);
}

/**
 * The primary's records after the last forward-mirrored one that are not kdr's copies of the standby's:
 * the outage records (exported) and whatever applications still wrote to the primary since. Read from
 * the maps, per partition, once: offset ranges (transaction markers in them are counted as offsets).
 */
class OutageRanges {
  private readonly cache = new Map<string, Promise<{ from: number; to: number }[]>>();
  constructor(private readonly deps: FailbackDeps) {}

  async before(tp: TopicPartition, position: number): Promise<{ from: number; to: number }[]> {
    const key = `${tp.topic}\u0000${tp.partition}`;
    if (!this.cache.has(key)) this.cache.set(key, this.ranges(tp));
    return (await this.cache.get(key)!)
      .filter((r) => r.from < position)
      .map((r) => ({ from: r.from, to: Math.min(r.to, position) }));
  }

  private async ranges(tp: TopicPartition): Promise<{ from: number; to: number }[]> {
    const [offsets] = await this.deps.primaryReader.offsets(tp.topic, [tp.partition]);
    const latest = await this.deps.forwardMap.latest(tp);
    const from = Math.max(latest ? latest.lastSource + 1 : offsets!.logStart, offsets!.logStart);
    const end = offsets!.lastStable;
    if (from >= end) return [];
    const copies = await copiedRangesOf(this.deps.reverseMap, tp, null, from, end);
    const own: { from: number; to: number }[] = [];
    let at = from;
    for (const c of copies) {
      if (c.from > at) own.push({ from: at, to: c.from });
      at = Math.max(at, c.to);
    }
    if (at < end) own.push({ from: at, to: end });
    return own;
  }
}

/** The primary is active again; the forward mirror may write. */
async function flipBackPhase(run: FailbackRun): Promise<PhaseResult> {
  await run.hold?.('after:flip');
  await run.lease.transition(
    { state: 'MIRRORING', activeCluster: run.deps.primaryAlias, reason: 'failback done' },
    { phase: 'late-writes' },
  );
  run.log.info('failed back', { operationId: run.lease.operation.id, epoch: run.lease.control.epoch });
  return 'next';
}

/**
 * Once more right after the flip: what the standby got until applications saw the primary active goes
 * back too (after every moved group's position). What a writer still sends the standby after that is
 * named in the report, never dropped silently.
 */
async function lateWritesPhase(run: FailbackRun): Promise<PhaseResult> {
  await drainBackPhase(run, 'late-writes');
  const { deps } = run;
  // Fenced: no reverse writer commits after this; what the standby has beyond it stays there.
  await deps.reverseEngine.close();
  const partitions = await mirroredPartitions(deps.standbyAdmin, deps.selectTopic);
  for (const outcome of await deps.reverseEngine.fenceAll(partitions, { check: () => run.lease.check() }))
    if (!outcome.fenced) throw outcome.error;
  const left: FailbackReport['leftOnStandby'] = [];
  for (const tp of partitions) {
    const range = await leftOnStandby(run, tp);
    if (range) left.push(range);
  }
  await save(run, 'left-on-standby', left);
  return advance(run);
}

/** Standby records after the last one mirrored back that are the standby's own (not forward copies). */
async function leftOnStandby(
  run: FailbackRun,
  tp: TopicPartition,
): Promise<FailbackReport['leftOnStandby'][number] | undefined> {
  const { deps } = run;
  const [offsets] = await deps.standbyReader.offsets(tp.topic, [tp.partition]);
  const back = await deps.reverseMap.latest(tp);
  const forward = await deps.forwardMap.latest(tp);
  const floor = back ? back.lastSource + 1 : forward ? forward.lastStandby + 1 : offsets!.logStart;
  const from = Math.max(floor, offsets!.logStart);
  if (from >= offsets!.lastStable) return undefined;
  let first: number | undefined;
  let last = -1;
  let records = 0;
  for await (const batch of readFromLogStart(deps.standbyReader, tp, from, offsets!.lastStable, {
    logStart: offsets!.logStart,
    onGap: () => {},
    clock: run.clock,
  })) {
    // The forward mirror runs again: its new copies of primary records are not the standby's own.
    const copies = await verifiedCopies(deps.forwardMap, tp, deps.primaryAlias, batch);
    for (const r of batch) {
      if (copies.has(r.offset)) continue;
      first ??= r.offset;
      last = r.offset;
      records++;
    }
  }
  return first === undefined
    ? undefined
    : { topic: tp.topic, partition: tp.partition, from: first, to: last + 1, records };
}

async function startMirrorPhase(run: FailbackRun): Promise<PhaseResult> {
  const { deps, lease } = run;
  const warnings: string[] = [];
  const mirrorStarted = deps.startMirror
    ? await deps.startMirror().catch((error) => {
        warnings.push(`could not start the mirror's event sources: ${describeError(error)}`);
        return [];
      })
    : [];
  await save(run, 'report', await failbackReport(run, mirrorStarted, warnings));
  await run.hold?.('after:start-mirror');
  await lease.patch({ phase: 'done', outcome: 'done', finishedAt: run.clock() });
  return 'next';
}

async function failbackReport(
  run: FailbackRun,
  mirrorStarted: string[],
  warnings: string[],
): Promise<FailbackReport> {
  const { deps, lease } = run;
  const op = lease.operation;
  const [exported, back, groups, left] = await Promise.all([
    saved<ExportData>(run, 'export'),
    saved<DrainData>(run, 'mirrored-back'),
    saved<{ moved: Record<string, GroupMove[]>; unread: UnreadRange[]; warnings: string[] }>(run, 'groups'),
    saved<FailbackReport['leftOnStandby']>(run, 'left-on-standby'),
  ]);
  const records = exported!.partitions.reduce((n, p) => n + p.records, 0);
  const notes: string[] = [];
  if (records > 0)
    notes.push(
      `${records} records on ${deps.primaryAlias} never reached ${deps.standbyAlias}; exported to ${exported!.location}`,
    );
  const unread = groups!.unread;
  if (unread.length > 0)
    notes.push(
      `${new Set(unread.map((u) => u.group)).size} group(s) were placed after records of ${deps.primaryAlias} the standby never had (see unread: primary offsets per group and partition); replay them from there, or fail back with --read-outage`,
    );
  for (const l of left ?? [])
    notes.push(
      `${l.topic}-${l.partition}: standby offsets ${l.from}..${l.to - 1} were written after the failback and are only on ${deps.standbyAlias}`,
    );
  const finished = run.clock();
  return {
    pair: deps.pair,
    operationId: op.id,
    epoch: lease.control.epoch,
    from: deps.standbyAlias,
    to: deps.primaryAlias,
    startedAt: new Date(op.startedAt).toISOString(),
    finishedAt: new Date(finished).toISOString(),
    durationMs: finished - op.startedAt,
    exported: {
      records,
      bytes: exported!.partitions.reduce((n, p) => n + p.objects.reduce((m, o) => m + o.bytes, 0), 0),
      location: exported!.location,
      partitions: exported!.partitions,
      gaps: exported!.gaps,
    },
    mirroredBack: back?.drained ?? 0,
    mirroredBackGaps: back?.gaps ?? [],
    groups: groups!.moved,
    unread,
    leftOnStandby: left ?? [],
    mirrorStarted,
    warnings: [...notes, ...groups!.warnings, ...warnings],
  };
}
