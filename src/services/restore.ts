import { hostname } from 'node:os';
import type { OutgoingRecord, SourceRecord } from '../core/records.ts';
import { recordSize } from '../core/records.ts';
import {
  formatOrigin,
  groupTargetOffsets,
  type Landing,
  mapTopics,
  originOfRestored,
  PositionTracker,
  planRestore,
  RESTORE_HEADER,
  type RestoreMode,
  type RestorePlan,
  restoreId,
  snapshotAt,
  type TargetTopicState,
  type TopicPlan,
  targetPartition,
} from '../core/restore.ts';
import { decodeSegment } from '../core/segment.ts';
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
import { listManifests, loadManifest } from './snapshot.ts';

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
  /** Takes a snapshot of these target topics before `replace` deletes them; returns its id. */
  safetySnapshot?: (topics: string[]) => Promise<string>;
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

export interface RestoreProgress {
  restoreId: string;
  generation: number;
  phase: 'prepare' | 'write' | 'groups' | 'complete';
  snapshotId: string;
  snapshotCluster: string;
  cutAt: string;
  target: string;
  mode: RestoreMode;
  plan: Omit<RestorePlan, 'topics'> & { topics: TopicPlanSaved[] };
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
  safetySnapshotId: string | null;
  topics: {
    source: string;
    target: string;
    action: TopicPlan['action'];
    partitions: number;
    repartitioned: boolean;
    records: number;
    bytes: number;
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
      phase: 'verify' | RestoreProgress['phase'];
      /** Segments whose checksum was checked (continue the check from there). */
      verifiedSegments?: number;
      records: number;
      totalRecords: number;
    };

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

/** Segments downloaded and decoded `depth` ahead of the consumer (memory: depth + 1 segments). */
async function* prefetched(
  objects: ObjectStore,
  refs: readonly SegmentRef[],
  depth: number,
): AsyncGenerator<{ ref: SegmentRef; records: SourceRecord[] }> {
  const load = (ref: SegmentRef) =>
    objects.get(ref.key).then((data) => ({ ref, records: decodeSegment(data, ref.sha256) }));
  const queue: Promise<{ ref: SegmentRef; records: SourceRecord[] }>[] = [];
  let next = 0;
  try {
    while (next < refs.length || queue.length > 0) {
      while (next < refs.length && queue.length <= depth) queue.push(load(refs[next++]!));
      yield await queue.shift()!;
    }
  } finally {
    // Downloads started ahead and never consumed must not reject unobserved.
    for (const pending of queue) pending.catch(() => {});
  }
}

/** Checks every segment a restore needs before anything is written; names each bad one. */
async function verifySegments(
  deps: RestoreDeps,
  refs: readonly SegmentRef[],
  from: number,
  outOfTime: () => boolean,
): Promise<number> {
  let checked = from;
  const bad: string[] = [];
  for (const ref of refs.slice(from)) {
    // At least one segment per run, so that a continued check always finishes.
    if (checked > from && outOfTime() && bad.length === 0) return checked;
    try {
      decodeSegment(await deps.objects.get(ref.key), ref.sha256);
    } catch (error) {
      bad.push(
        `${deps.objects.url(ref.key)}: ${error instanceof NotFoundError ? 'missing' : (error as Error).message}`,
      );
    }
    checked++;
    deps.onProgress?.({
      phase: 'verify',
      done: checked,
      total: refs.length,
      records: 0,
      totalRecords: 0,
      bytes: 0,
    });
  }
  if (bad.length > 0)
    throw new KdrError(
      'INTEGRITY_FAILED',
      `the snapshot cannot be restored, ${bad.length} segment(s) are bad (nothing was written): ${bad.join('; ')}`,
      { details: { badSegments: bad } },
    );
  return checked;
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
    safetySnapshotId: progress.safetySnapshotId,
    topics,
    groups: progress.groups,
    records: progress.records,
    bytes: progress.bytes,
    durationMs: clock() - started,
    warnings: [
      ...progress.plan.warnings,
      ...Object.entries(progress.groups)
        .filter(([, g]) => g.status === 'skipped')
        .map(([group, g]) => `group ${group}: ${g.error}`),
    ],
  };
}

/** Runs a restore, or continues the one these arguments started; stops early (saving progress) near `deadline`. */
export async function runRestore(
  deps: RestoreDeps,
  request: RestoreRequest,
  options: { deadline?: number; verifiedSegments?: number } = {},
): Promise<RestoreResult> {
  const clock = deps.clock ?? Date.now;
  const started = clock();
  const owner = deps.owner ?? `${hostname()}/${process.pid}`;
  const outOfTime = () => options.deadline !== undefined && clock() > options.deadline - DEADLINE_MARGIN_MS;
  if (!['new', 'append', 'replace'].includes(request.mode))
    throw new InputError(`expected --mode new, append or replace, got ${JSON.stringify(request.mode)}`);
  if (request.mode === 'replace' && !request.yes && !request.dryRun)
    throw new InputError(
      '--mode replace deletes and recreates the target topics: add --yes to confirm (a safety snapshot of them is taken first unless --no-safety-snapshot)',
    );

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
  const log = deps.logger.child({ operation: 'restore', restoreId: id, snapshotId: manifest.snapshotId });
  const segmentsOf = (source: string) => manifest.segments.filter((s) => s.topic === source);

  let progress = await deps.store.get(id);
  if (progress?.phase === 'complete' && Object.values(progress.groups).every((g) => g.status === 'committed'))
    return { status: 'complete', report: reportOf(progress, started, clock) };

  if (!progress || request.dryRun) {
    const targets = new Map<string, TargetTopicState>();
    const existing = new Set(await deps.target.admin.listTopics());
    const counts = await deps.target.admin.partitionCounts(
      [...mapping.values()].filter((t) => existing.has(t)),
    );
    for (const target of mapping.values()) {
      if (!existing.has(target)) continue;
      const offsets = await deps.target.reader.offsets(target);
      targets.set(target, {
        exists: true,
        partitions: counts.get(target) ?? offsets.length,
        records: offsets.reduce((n, o) => n + Math.max(0, o.highWatermark - o.logStart), 0),
      });
    }
    let plan: RestorePlan;
    try {
      plan = planRestore({
        manifest,
        mapping,
        mode: request.mode,
        targets,
        targetBrokers: await deps.target.admin.brokerCount(),
        resumed: progress !== undefined,
      });
    } catch (error) {
      throw new InputError((error as Error).message);
    }
    if (request.dryRun)
      return { status: 'complete', report: dryRunReport(id, manifest, plan, request, deps, started, clock) };
    if (progress) throw new Error('unreachable: a restore in progress is continued, not planned again');

    const refs = plan.topics.flatMap((t) => t.segments);
    const verified = await verifySegments(deps, refs, options.verifiedSegments ?? 0, outOfTime);
    if (verified < refs.length) {
      log.info('restore paused while checking segments; the next run continues it', { verified });
      return {
        status: 'in-progress',
        restoreId: id,
        phase: 'verify',
        verifiedSegments: verified,
        records: 0,
        totalRecords: plan.records,
      };
    }
    progress = {
      restoreId: id,
      generation: 1,
      phase: 'prepare',
      snapshotId: manifest.snapshotId,
      snapshotCluster: manifest.cluster,
      cutAt: manifest.cutAt,
      target: deps.target.label,
      mode: request.mode,
      plan: { ...plan, topics: plan.topics.map(({ segments: _segments, ...t }) => t) },
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
      startedAt: new Date(started).toISOString(),
      finishedAt: null,
      owner,
    };
    await deps.store.create(progress);
    log.info('restore started', { target: deps.target.label, mode: request.mode, records: plan.records });
  } else {
    progress = await deps.store.claim(id);
    progress.owner = owner;
    log.info('continuing the restore in progress', { phase: progress.phase, records: progress.records });
  }
  const state = progress;
  const save = () => deps.store.save(state);

  // 2. prepare
  if (state.phase === 'prepare') {
    if (state.mode === 'replace' && deps.safetySnapshot && request.safetySnapshot) {
      const existing = new Set(await deps.target.admin.listTopics());
      const present = state.plan.topics.map((t) => t.target).filter((t) => existing.has(t));
      if (present.length > 0 && state.safetySnapshotId === null) {
        state.safetySnapshotId = await deps.safetySnapshot(present);
        log.info('safety snapshot taken before replacing topics', {
          safetySnapshotId: state.safetySnapshotId,
        });
        await save();
      }
    }
    for (const t of state.plan.topics) {
      if (state.prepared.includes(t.target)) continue;
      if (t.action === 'recreate') {
        if ((await deps.target.admin.listTopics()).includes(t.target))
          await deps.target.admin.deleteTopic(t.target);
        await deps.target.admin.createTopic(
          t.target,
          t.targetPartitions,
          t.replicationFactor,
          withHeadroom(t.configs),
        );
      } else if (t.action === 'create') {
        await deps.target.admin.createTopic(
          t.target,
          t.targetPartitions,
          t.replicationFactor,
          withHeadroom(t.configs),
        );
      }
      for (const o of await deps.target.reader.offsets(t.target))
        state.scanFrom[`${t.target}/${o.partition}`] = o.lastStable;
      state.prepared.push(t.target);
      await save();
    }
    state.phase = 'write';
    await save();
  }

  // 3. write
  const partitionCounts = new Map(state.plan.topics.map((t) => [t.source, t.sourcePartitions]));
  const tracker = new PositionTracker(manifest.groups, partitionCounts, state.landings);
  const totalRecords = state.plan.records;
  if (state.phase === 'write') {
    const writer = await deps.target.writers.openWithId(restoreTransactionalId(id), { restoreId: id });
    try {
      // The writer is open, so no older process of this restore can commit any more: read what arrived.
      for (const t of state.plan.topics) await recoverTail(deps, state, t, tracker);
      await save();
      const described = await deps.target.admin.describeTopics(state.plan.topics.map((t) => t.target));
      for (const t of state.plan.topics) {
        const configured = described.find((d) => d.name === t.target)?.configs['max.message.bytes']?.value;
        const maxBytes = Math.min(
          deps.maxRequestBytes,
          Number(configured ?? DEFAULT_MAX_MESSAGE_BYTES) - BATCH_OVERHEAD_BYTES,
        );
        const pending = segmentsOf(t.source)
          .filter((s) => s.lastOffset > (state.done[`${t.source}/${s.partition}`] ?? -1))
          .sort((a, b) => a.partition - b.partition || a.firstOffset - b.firstOffset);
        for await (const { ref, records } of prefetched(deps.objects, pending, deps.prefetch)) {
          const key = `${t.source}/${ref.partition}`;
          const fresh = records.filter((r) => r.offset > (state.done[key] ?? -1));
          for (let i = 0; i < fresh.length; i += deps.maxTransactionRecords) {
            const chunk = fresh.slice(i, i + deps.maxTransactionRecords);
            await writeChunk(writer, state, manifest.snapshotId, t, ref.partition, chunk, maxBytes, tracker);
            await save();
            deps.onProgress?.({
              phase: 'write',
              done: state.records,
              total: totalRecords,
              records: state.records,
              totalRecords,
              bytes: state.bytes,
            });
            if (outOfTime()) {
              log.info('restore paused; the next run continues it', { records: state.records });
              return {
                status: 'in-progress',
                restoreId: id,
                phase: 'write',
                records: state.records,
                totalRecords,
              };
            }
          }
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
    state.phase = 'groups';
    await save();
  }

  // 4. groups (also retried when a completed restore is run again after a group was skipped)
  if (state.phase === 'groups' || state.phase === 'complete') {
    const ends = new Map<string, number[]>();
    for (const t of state.plan.topics)
      ends.set(
        t.target,
        (await deps.target.reader.offsets(t.target)).map((o) => o.lastStable),
      );
    for (const group of state.plan.groups) {
      if (state.groups[group]?.status === 'committed') continue;
      state.groups[group] = await restoreGroup(deps, state, manifest, group, tracker.landings, ends);
      await save();
    }
    state.phase = 'complete';
    state.finishedAt = new Date(clock()).toISOString();
    await save();
    log.info('restore complete', { records: state.records, groups: Object.keys(state.groups).length });
  }
  return { status: 'complete', report: reportOf(state, started, clock) };
}

/** Topics kdr creates take the snapshot's record size limit plus room for the provenance header. */
function withHeadroom(configs: Record<string, string>): Record<string, string> {
  const limit = Number(configs['max.message.bytes'] ?? DEFAULT_MAX_MESSAGE_BYTES);
  return { ...configs, 'max.message.bytes': String(limit + PROVENANCE_HEADROOM_BYTES) };
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
    const from = state.scanFrom[key] ?? o.logStart;
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

async function writeChunk(
  writer: MultiPartitionWriter,
  state: RestoreProgress,
  snapshotId: string,
  t: TopicPlanSaved,
  sourcePartition: number,
  chunk: SourceRecord[],
  maxRequestBytes: number,
  tracker: PositionTracker,
): Promise<void> {
  const byTarget = new Map<number, { record: SourceRecord; outgoing: OutgoingRecord }[]>();
  for (const record of chunk) {
    const tp = t.repartitioned
      ? targetPartition(record, sourcePartition, t.targetPartitions)
      : sourcePartition;
    const outgoing: OutgoingRecord = {
      sourceOffset: record.offset,
      timestamp: record.timestamp,
      key: record.key,
      value: record.value,
      headers: [
        ...record.headers,
        {
          key: RESTORE_HEADER,
          value: Buffer.from(
            formatOrigin({ snapshotId, topic: t.source, partition: sourcePartition, offset: record.offset }),
          ),
        },
      ],
    };
    const list = byTarget.get(tp) ?? [];
    list.push({ record, outgoing });
    byTarget.set(tp, list);
  }
  const targets = [...byTarget.keys()].sort((a, b) => a - b);
  const batches: PartitionBatch[] = targets.map((tp) => {
    const requests: OutgoingRecord[][] = [];
    let request: OutgoingRecord[] = [];
    let bytes = 0;
    for (const { outgoing } of byTarget.get(tp)!) {
      const size = recordSize(outgoing);
      if (request.length > 0 && bytes + size > maxRequestBytes) {
        requests.push(request);
        request = [];
        bytes = 0;
      }
      request.push(outgoing);
      bytes += size;
    }
    if (request.length > 0) requests.push(request);
    return { target: { topic: t.target, partition: tp }, requests };
  });
  const offsets = await writer.writeMany(batches);
  targets.forEach((tp, i) => {
    const written = byTarget.get(tp)!;
    const at = offsets[i]!;
    written.forEach(({ record }, j) => {
      tracker.written(t.source, sourcePartition, record.offset, tp, at[j]!);
      statsAdd(state.targetStats, `${t.target}/${tp}`, at[j]!);
      statsAdd(state.sourceStats, `${t.source}/${sourcePartition}`, record.offset);
      state.bytes += recordSize(record);
    });
    state.scanFrom[`${t.target}/${tp}`] = at.at(-1)! + 1;
  });
  state.records += chunk.length;
  state.done[`${t.source}/${sourcePartition}`] = chunk.at(-1)!.offset;
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

function dryRunReport(
  id: string,
  manifest: SnapshotManifest,
  plan: RestorePlan,
  request: RestoreRequest,
  deps: RestoreDeps,
  started: number,
  clock: () => number,
): RestoreReport {
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
    restoreId: id,
    snapshotId: manifest.snapshotId,
    snapshotCluster: manifest.cluster,
    cutAt: manifest.cutAt,
    target: deps.target.label,
    mode: request.mode,
    dryRun: true,
    safetySnapshotId: null,
    topics: plan.topics.map((t) => ({
      source: t.source,
      target: t.target,
      action: t.action,
      partitions: t.targetPartitions,
      repartitioned: t.repartitioned,
      records: t.records,
      bytes: t.bytes,
    })),
    groups,
    records: plan.records,
    bytes: plan.bytes,
    durationMs: clock() - started,
    warnings: [
      ...plan.warnings,
      ...(request.mode === 'replace' && request.safetySnapshot
        ? ['replace: a safety snapshot of the existing target topics is taken before they are deleted']
        : []),
    ],
  };
}
