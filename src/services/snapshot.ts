import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { SourceRecord } from '../core/records.ts';
import { decodeSegment, encodeSegment } from '../core/segment.ts';
import {
  chainSegments,
  clampGroups,
  type Gap,
  manifestKey,
  planRanges,
  type SegmentRef,
  SNAPSHOT_FORMAT,
  type SnapshotManifest,
  segmentKey,
  selectForPrune,
  snapshotId,
  type TopicInfo,
  unreferenced,
} from '../core/snapshot.ts';
import { isInternalTopic } from '../core/topicSync.ts';
import { InputError, NotFoundError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GroupAdmin, PartitionReader, TopicAdmin } from '../ports/kafka.ts';
import type { ObjectStore } from '../ports/objectStore.ts';
import type { SnapshotCatalog, SnapshotIndexEntry } from '../ports/snapshotCatalog.ts';

/**
 * Consistent, incremental snapshots of a cluster's selected topics to the object store.
 *
 * A run takes the cut (group offsets first, end offsets second: see core/snapshot.ts), then reads each
 * partition's records from the parent's cut to this cut into immutable, checksummed segments, uploading a
 * segment while the next one is read (bounded memory: two segments). Progress is saved after every
 * segment, so a run cut short (a Lambda's time budget, a crash) is continued by the next one. The manifest
 * is written last, with If-None-Match: a snapshot without a manifest does not exist.
 */

export interface SnapshotDeps {
  pair: string;
  cluster: string;
  reader: PartitionReader;
  admin: TopicAdmin & GroupAdmin;
  objects: ObjectStore;
  catalog: SnapshotCatalog;
  selectTopic: (topic: string) => boolean;
  /** Uncompressed bytes per segment. */
  segmentBytes: number;
  /** How long the cluster's snapshot lease lasts without renewal (a crashed run blocks no longer). */
  leaseMs?: number;
  prefix?: string;
  logger: Logger;
  owner?: string;
  clock?: () => number;
  onProgress?: (p: { records: number; bytes: number; partitionsDone: number; partitions: number }) => void;
}

interface RangeProgress {
  topic: string;
  partition: number;
  from: number;
  to: number;
  next: number;
  inherits: boolean;
}

interface SnapshotProgress {
  snapshotId: string;
  parent: string | null;
  startedAt: string;
  cutAt: string;
  topics: Record<string, TopicInfo>;
  cut: SnapshotManifest['cut'];
  groups: SnapshotManifest['groups'];
  clamped: SnapshotManifest['clamped'];
  gaps: Gap[];
  ranges: RangeProgress[];
  segments: SegmentRef[];
  records: number;
  bytes: number;
  warnings: string[];
}

export type SnapshotResult =
  | { status: 'complete'; manifest: SnapshotManifest; warnings: string[] }
  | {
      status: 'in-progress';
      snapshotId: string;
      records: number;
      bytes: number;
      segments: number;
      partitionsLeft: number;
    };

const PREFIX = 'snapshots';
const LEASE_MS = 60_000;
/** What a run keeps in hand before its deadline to save its progress. */
const DEADLINE_MARGIN_MS = 1_000;

const progressKey = (prefix: string, cluster: string) => `${prefix}/progress/${cluster}.json`;

async function readJson<T>(objects: ObjectStore, key: string): Promise<T | undefined> {
  try {
    return JSON.parse((await objects.get(key)).toString('utf8')) as T;
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
}

export async function loadManifest(
  objects: ObjectStore,
  id: string,
  prefix = PREFIX,
): Promise<SnapshotManifest> {
  if (!/^[0-9TZ]+-[0-9a-f]+$/.test(id))
    throw new InputError(`expected a snapshot id such as 20261124T193000Z-3fa9, got ${JSON.stringify(id)}`);
  const manifest = await readJson<SnapshotManifest>(objects, manifestKey(prefix, id));
  if (!manifest)
    throw new NotFoundError(`snapshot ${id} does not exist (no ${objects.url(manifestKey(prefix, id))})`);
  return manifest;
}

/** Every manifest of a cluster, oldest first (the object store is the truth; the index mirrors it). */
export async function listManifests(
  objects: ObjectStore,
  cluster?: string,
  prefix = PREFIX,
): Promise<SnapshotManifest[]> {
  const keys = (await objects.list(`${prefix}/manifests/`)).map((o) => o.key).sort();
  const manifests: SnapshotManifest[] = [];
  for (const key of keys) {
    const manifest = await readJson<SnapshotManifest>(objects, key);
    if (manifest && (!cluster || manifest.cluster === cluster)) manifests.push(manifest);
  }
  return manifests.sort((a, b) => a.cutAt.localeCompare(b.cutAt) || a.snapshotId.localeCompare(b.snapshotId));
}

function indexEntry(m: SnapshotManifest, prefix: string): SnapshotIndexEntry {
  return {
    snapshotId: m.snapshotId,
    cluster: m.cluster,
    parent: m.parent,
    cutAt: m.cutAt,
    completedAt: m.completedAt,
    manifestKey: manifestKey(prefix, m.snapshotId),
    records: m.records,
    bytes: m.bytes,
    segments: m.segments.length,
    gaps: m.gaps.length,
  };
}

async function startSnapshot(
  deps: SnapshotDeps,
  prefix: string,
  clock: () => number,
): Promise<SnapshotProgress> {
  const started = clock();
  const manifests = await listManifests(deps.objects, deps.cluster, prefix);
  const parent = manifests.at(-1) ?? null;
  const names = (await deps.admin.listTopics()).filter((n) => !isInternalTopic(n) && deps.selectTopic(n));
  const described = await deps.admin.describeTopics(names);
  const topics: Record<string, TopicInfo> = {};
  for (const t of described) {
    const configs: Record<string, string> = {};
    for (const [name, c] of Object.entries(t.configs))
      if (c.explicit && c.value !== null) configs[name] = c.value;
    topics[t.name] = {
      ...(t.topicId ? { topicId: t.topicId } : {}),
      partitions: t.partitions,
      configs,
      replicationFactor: t.replicationFactor,
    };
  }
  // The cut: group offsets first, then end offsets (see core/snapshot.ts for why this order).
  const committed: { group: string; topic: string; partition: number; offset: number }[] = [];
  for (const group of await deps.admin.listGroups()) {
    for (const c of await deps.admin.committedOffsets(group, Object.keys(topics)))
      committed.push({ group, ...c });
  }
  const cutAt = clock();
  const partitions: { topic: string; partition: number; logStart: number; end: number }[] = [];
  for (const topic of Object.keys(topics).sort()) {
    for (const o of await deps.reader.offsets(topic))
      partitions.push({ topic, partition: o.partition, logStart: o.logStart, end: o.lastStable });
  }
  const cut: SnapshotManifest['cut'] = {};
  const { ranges, gaps, warnings } = planRanges({
    partitions,
    parent,
    topicIds: Object.fromEntries(Object.entries(topics).map(([name, t]) => [name, t.topicId])),
  });
  for (const r of ranges) {
    cut[r.topic] ??= {};
    cut[r.topic]![String(r.partition)] = { start: r.from, end: r.to };
  }
  const { groups, clamped } = clampGroups(committed, cut);
  for (const c of clamped) {
    warnings.push(
      `group ${c.group} committed ${c.committed} on ${c.topic}-${c.partition}, beyond the cut ${c.clampedTo}: clamped`,
    );
  }
  for (const g of gaps)
    warnings.push(
      `${g.topic}-${g.partition}: offsets ${g.from}-${g.to - 1} were deleted by retention before this snapshot read them`,
    );
  return {
    snapshotId: snapshotId(started, randomBytes(2).toString('hex')),
    parent: parent?.snapshotId ?? null,
    startedAt: new Date(started).toISOString(),
    cutAt: new Date(cutAt).toISOString(),
    topics,
    cut,
    groups,
    clamped,
    gaps,
    ranges: ranges.map((r) => ({ ...r, next: r.from })),
    segments: [],
    records: 0,
    bytes: 0,
    warnings,
  };
}

/** Takes a snapshot, or continues the one in progress; stops early (saving progress) near `deadline`. */
export async function runSnapshot(
  deps: SnapshotDeps,
  options: { deadline?: number } = {},
): Promise<SnapshotResult> {
  const prefix = deps.prefix ?? PREFIX;
  const clock = deps.clock ?? Date.now;
  const owner = deps.owner ?? `${hostname()}/${process.pid}`;
  const log = deps.logger.child({ operation: 'snapshot', cluster: deps.cluster });
  // Fails fast, before anything is written, when the bucket is missing or unreachable.
  await deps.objects.list(`${prefix}/progress/`);
  const leaseMs = deps.leaseMs ?? LEASE_MS;
  await deps.catalog.acquireLease(deps.cluster, owner, leaseMs);
  try {
    const key = progressKey(prefix, deps.cluster);
    let progress = await readJson<SnapshotProgress>(deps.objects, key);
    if (progress) {
      log.info('continuing the snapshot in progress', { snapshotId: progress.snapshotId });
    } else {
      progress = await startSnapshot(deps, prefix, clock);
      await deps.objects.put(key, JSON.stringify(progress), { contentType: 'application/json' });
      log.info('snapshot started', { snapshotId: progress.snapshotId, parent: progress.parent });
    }
    const state = progress;
    // Saving progress also renews the lease.
    const save = async () => {
      await deps.objects.put(key, JSON.stringify(state), { contentType: 'application/json' });
      await deps.catalog.acquireLease(deps.cluster, owner, leaseMs);
    };
    // Every run uploads at least one segment before it looks at the deadline: however small the budget,
    // a snapshot that continues run after run always finishes.
    let uploadedThisRun = 0;
    const outOfTime = () =>
      uploadedThisRun > 0 &&
      options.deadline !== undefined &&
      clock() > options.deadline - DEADLINE_MARGIN_MS;
    const report = () =>
      deps.onProgress?.({
        records: state.records,
        bytes: state.bytes,
        partitionsDone: state.ranges.filter((r) => r.next >= r.to).length,
        partitions: state.ranges.length,
      });

    // One upload in flight while the next segment is read: memory stays at about two segments.
    let uploading: Promise<void> = Promise.resolve();
    const flush = async (range: RangeProgress, records: SourceRecord[]) => {
      const segment = encodeSegment(records);
      const ref: SegmentRef = {
        key: '',
        topic: range.topic,
        partition: range.partition,
        firstOffset: segment.firstOffset,
        lastOffset: segment.lastOffset,
        firstTimestamp: segment.firstTimestamp,
        lastTimestamp: segment.lastTimestamp,
        records: segment.records,
        bytes: segment.bytes,
        size: segment.data.length,
        sha256: segment.sha256,
      };
      ref.key = segmentKey(prefix, deps.cluster, ref);
      await uploading;
      uploading = (async () => {
        await deps.objects.put(ref.key, segment.data, { contentType: 'application/octet-stream' });
        uploadedThisRun++;
        state.segments.push(ref);
        state.records += ref.records;
        state.bytes += ref.bytes;
        range.next = ref.lastOffset + 1;
        await save();
        report();
      })();
    };

    for (const range of state.ranges) {
      if (range.next >= range.to) continue;
      let pending: SourceRecord[] = [];
      let pendingBytes = 0;
      let offset = range.next;
      let paused = false;
      while (offset < range.to && !paused) {
        if (outOfTime()) break;
        const fetched = await deps.reader.fetch(range, offset);
        for (const record of fetched.records) {
          if (record.offset >= range.to) break;
          pending.push(record);
          pendingBytes += 32 + (record.key?.length ?? 0) + (record.value?.length ?? 0);
          for (const h of record.headers) pendingBytes += 8 + h.key.length + (h.value?.length ?? 0);
          if (pendingBytes >= deps.segmentBytes) {
            await flush(range, pending);
            pending = [];
            pendingBytes = 0;
            // One fetch can hold many segments: the deadline is checked after each (the rest is read again).
            if (outOfTime()) {
              paused = true;
              break;
            }
          }
        }
        if (paused) break;
        if (fetched.nextOffset <= offset) break; // nothing committed left below the cut
        offset = fetched.nextOffset;
      }
      if (pending.length > 0) await flush(range, pending);
      await uploading;
      if (outOfTime()) {
        await save();
        const left = state.ranges.filter((r) => r.next < r.to).length;
        log.info('snapshot paused; the next run continues it', {
          snapshotId: state.snapshotId,
          records: state.records,
          partitionsLeft: left,
        });
        return {
          status: 'in-progress',
          snapshotId: state.snapshotId,
          records: state.records,
          bytes: state.bytes,
          segments: state.segments.length,
          partitionsLeft: left,
        };
      }
      // The rest of the range held only markers or aborted records.
      range.next = range.to;
    }
    await uploading;

    const parent = state.parent ? await loadManifest(deps.objects, state.parent, prefix) : null;
    const inherited = new Set(
      state.ranges.filter((r) => r.inherits).map((r) => `${r.topic}\u0000${r.partition}`),
    );
    const manifest: SnapshotManifest = {
      format: SNAPSHOT_FORMAT,
      snapshotId: state.snapshotId,
      parent: state.parent,
      pair: deps.pair,
      cluster: deps.cluster,
      startedAt: state.startedAt,
      cutAt: state.cutAt,
      completedAt: new Date(clock()).toISOString(),
      topics: state.topics,
      cut: state.cut,
      groups: state.groups,
      clamped: state.clamped,
      segments: chainSegments(parent, inherited, state.segments),
      gaps: [
        ...(parent?.gaps ?? []).filter((g) => inherited.has(`${g.topic}\u0000${g.partition}`)),
        ...state.gaps,
      ],
      records: state.records,
      bytes: state.bytes,
      newSegments: state.segments.length,
    };
    // Written last, never over an existing one: a snapshot without its manifest does not exist.
    await deps.objects.put(manifestKey(prefix, manifest.snapshotId), JSON.stringify(manifest, null, 2), {
      ifNoneMatch: true,
      contentType: 'application/json',
    });
    await deps.catalog.index(indexEntry(manifest, prefix));
    await deps.objects.delete([key]);
    log.info('snapshot complete', {
      snapshotId: manifest.snapshotId,
      records: manifest.records,
      segments: manifest.newSegments,
    });
    return { status: 'complete', manifest, warnings: state.warnings };
  } finally {
    // A failure here must not hide the one that ended the run; an unreleased lease simply expires.
    await deps.catalog
      .releaseLease(deps.cluster, owner)
      .catch((error: Error) =>
        log.warn('could not release the snapshot lease; it expires on its own', { error: error.message }),
      );
  }
}

export interface VerifyResult {
  snapshotId: string;
  segments: number;
  records: number;
  bad: { key: string; problem: string }[];
  deep?: {
    compared: number;
    missingFromCluster: number;
    differing: { topic: string; partition: number; offset: number }[];
  };
}

/** Checks every segment of a snapshot exists and matches its checksum; `deep` compares with the cluster. */
export async function verifySnapshot(
  deps: Pick<SnapshotDeps, 'objects' | 'reader' | 'prefix'>,
  id: string,
  options: { deep: boolean },
): Promise<VerifyResult> {
  const manifest = await loadManifest(deps.objects, id, deps.prefix ?? PREFIX);
  const result: VerifyResult = { snapshotId: id, segments: manifest.segments.length, records: 0, bad: [] };
  if (options.deep) result.deep = { compared: 0, missingFromCluster: 0, differing: [] };
  for (const ref of manifest.segments) {
    let records: SourceRecord[];
    try {
      records = decodeSegment(await deps.objects.get(ref.key), ref.sha256);
    } catch (error) {
      result.bad.push({
        key: ref.key,
        problem: error instanceof NotFoundError ? 'missing' : (error as Error).message,
      });
      continue;
    }
    if (records.length !== ref.records)
      result.bad.push({
        key: ref.key,
        problem: `holds ${records.length} records, the manifest says ${ref.records}`,
      });
    result.records += records.length;
    if (!result.deep) continue;
    const onCluster = new Map<number, SourceRecord>();
    const [offsets] = await deps.reader.offsets(ref.topic, [ref.partition]);
    const from = Math.max(ref.firstOffset, offsets!.logStart);
    for await (const batch of deps.reader.readRange(ref, from, ref.lastOffset + 1))
      for (const r of batch) onCluster.set(r.offset, r);
    for (const r of records) {
      const c = onCluster.get(r.offset);
      if (!c) {
        result.deep.missingFromCluster++;
        continue;
      }
      result.deep.compared++;
      const same =
        (c.key === null ? r.key === null : r.key !== null && c.key.equals(r.key)) &&
        (c.value === null ? r.value === null : r.value !== null && c.value.equals(r.value)) &&
        c.timestamp === r.timestamp &&
        JSON.stringify(c.headers) === JSON.stringify(r.headers);
      if (!same) result.deep.differing.push({ topic: ref.topic, partition: ref.partition, offset: r.offset });
    }
  }
  return result;
}

export interface PruneResult {
  removedSnapshots: string[];
  deletedSegments: number;
  keptSnapshots: number;
}

/** Deletes the selected snapshots' manifests, then every segment no remaining manifest references. */
export async function pruneSnapshots(
  deps: Pick<SnapshotDeps, 'objects' | 'catalog' | 'prefix' | 'logger'>,
  rule: { keep?: number; olderThanMs?: number },
  now = Date.now(),
): Promise<PruneResult> {
  if (rule.keep === undefined && rule.olderThanMs === undefined)
    throw new InputError('prune needs --keep N or --older-than DURATION');
  const prefix = deps.prefix ?? PREFIX;
  const all = await listManifests(deps.objects, undefined, prefix);
  const byCluster = new Map<string, SnapshotManifest[]>();
  for (const m of all) byCluster.set(m.cluster, [...(byCluster.get(m.cluster) ?? []), m]);
  const removed: string[] = [];
  for (const [cluster, manifests] of byCluster) {
    for (const id of selectForPrune(manifests, rule, now)) {
      await deps.objects.delete([manifestKey(prefix, id)]);
      await deps.catalog.remove(cluster, id);
      removed.push(id);
    }
  }
  // Mark: what the remaining manifests and any snapshot in progress reference. Sweep: the rest.
  const remaining = all.filter((m) => !removed.includes(m.snapshotId));
  const live = remaining.flatMap((m) => m.segments.map((s) => s.key));
  for (const { key } of await deps.objects.list(`${prefix}/progress/`)) {
    const progress = await readJson<SnapshotProgress>(deps.objects, key);
    live.push(...(progress?.segments ?? []).map((s) => s.key));
  }
  const segments = (await deps.objects.list(`${prefix}/segments/`)).map((o) => o.key);
  const dead = unreferenced(segments, live);
  await deps.objects.delete(dead);
  deps.logger.info('pruned snapshots', { removed: removed.length, deletedSegments: dead.length });
  return { removedSnapshots: removed, deletedSegments: dead.length, keptSnapshots: remaining.length };
}
