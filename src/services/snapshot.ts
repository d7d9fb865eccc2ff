import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { SourceRecord } from '../core/records.ts';
import { decodeSegment, encodeSegment, type SegmentCompression } from '../core/segment.ts';
import {
  chainSegments,
  clampGroups,
  clampToLogStart,
  type Gap,
  isCompacted,
  manifestKey,
  normalizeManifest,
  planRanges,
  type SegmentRef,
  SNAPSHOT_FORMAT,
  type SnapshotManifest,
  segmentKey,
  selectForPrune,
  snapshotId,
  type TopicInfo,
  unreferenced,
  withGapDefaults,
} from '../core/snapshot.ts';
import { isInternalTopic } from '../core/topicSync.ts';
import { InputError, KdrError, NotFoundError, StateError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { FetchResult, GroupAdmin, PartitionReader, TopicAdmin } from '../ports/kafka.ts';
import type { ObjectStore } from '../ports/objectStore.ts';
import type { SnapshotCatalog, SnapshotIndexEntry } from '../ports/snapshotCatalog.ts';

/**
 * Consistent, incremental snapshots of a cluster's selected topics to the object store.
 *
 * A run takes the cut (group offsets first, end offsets second: see core/snapshot.ts), then reads each
 * partition's records from the parent's cut to this cut into immutable, checksummed segments, uploading a
 * segment while the next one is read (bounded memory: two segments). Every read is clamped to the
 * partition's current log start: what retention or DeleteRecords removed before it was read is a gap in the
 * manifest, never a fetch that fails on every run. Progress is saved after every segment, once the lease is
 * renewed (a run whose lease was taken over stops without writing), so a run cut short (a Lambda's time
 * budget, a crash) is continued by the next one. The manifest is written last, with If-None-Match: a
 * snapshot without a manifest does not exist. Completing is idempotent: a run cut after the manifest or
 * after the index is finished by the next one.
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
  /** Partitions read at the same time (memory: about two segments each). */
  rangesInFlight?: number;
  /** How new segments are compressed (zstd unless said otherwise; readers take either). */
  compression?: SegmentCompression;
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
/**
 * Partitions read at the same time. One partition at a time left the process idle two thirds of the time,
 * waiting on a fetch or an upload; each partition in flight holds up to about two segments and a fetch.
 */
const RANGES_IN_FLIGHT = 2;
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
  return normalizeManifest(manifest);
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
    if (manifest && (!cluster || manifest.cluster === cluster)) manifests.push(normalizeManifest(manifest));
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
    // The effective policy (a broker default counts too): compacted topics are read whole (see planRanges).
    compacted: new Set(
      described.filter((t) => isCompacted(t.configs['cleanup.policy']?.value)).map((t) => t.name),
    ),
    seenAt: new Date(cutAt).toISOString(),
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
      `${g.topic}-${g.partition}: offsets ${g.from}-${g.to - 1} were deleted (retention or DeleteRecords) before this snapshot read them`,
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
    const saved = await readJson<SnapshotProgress>(deps.objects, key);
    if (saved) saved.gaps = withGapDefaults(saved.gaps, saved.cutAt);
    const run = new SnapshotRun(deps, saved ?? (await startSnapshot(deps, prefix, clock)), {
      prefix,
      key,
      owner,
      leaseMs,
      clock,
      log,
      ...(options.deadline !== undefined ? { deadline: options.deadline } : {}),
    });
    if (saved) {
      log.info('continuing the snapshot in progress', { snapshotId: saved.snapshotId });
    } else {
      await run.save();
      log.info('snapshot started', { snapshotId: run.state.snapshotId, parent: run.state.parent });
    }
    if (!(await run.readRanges(deps.rangesInFlight ?? RANGES_IN_FLIGHT))) return await run.pause();
    const manifest = await run.complete();
    return { status: 'complete', manifest, warnings: run.state.warnings };
  } finally {
    // A failure here must not hide the one that ended the run; an unreleased lease simply expires.
    await deps.catalog
      .releaseLease(deps.cluster, owner)
      .catch((error: Error) =>
        log.warn('could not release the snapshot lease; it expires on its own', { error: error.message }),
      );
  }
}

/** One range being read: its segments upload one at a time, in order. */
interface Lane {
  uploading: Promise<void>;
}

interface AheadFetch {
  at: number;
  result: Promise<FetchResult>;
}

interface RunOptions {
  prefix: string;
  /** The progress object's key. */
  key: string;
  owner: string;
  leaseMs: number;
  clock: () => number;
  deadline?: number;
  log: Logger;
}

/** One run of a snapshot: reads ranges into segments, saves progress, and completes the snapshot. */
class SnapshotRun {
  private uploadedThisRun = 0;
  /** Another partition of this run failed: the others stop after their current segment. */
  private failed = false;
  /** Saves one after another: partitions read at the same time must not put an older progress last. */
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: SnapshotDeps,
    readonly state: SnapshotProgress,
    private readonly o: RunOptions,
  ) {}

  /**
   * Renews the lease, then writes the progress: a runner whose lease another took over (it stalled past the
   * lease, or its clock runs behind) stops here, before it writes anything.
   */
  save(): Promise<void> {
    const saved = this.saving.then(async () => {
      await this.renewLease();
      await this.deps.objects.put(this.o.key, JSON.stringify(this.state), {
        contentType: 'application/json',
      });
    });
    this.saving = saved.catch(() => {});
    return saved;
  }

  /**
   * Reads every unfinished range, `inFlight` partitions at a time; false when the deadline stopped it. A
   * failure stops the other partitions after the segment each is writing (saved), and is thrown once they
   * stopped: nothing of this run is written after it reports.
   */
  async readRanges(inFlight: number): Promise<boolean> {
    const queue = this.state.ranges.filter((r) => r.next < r.to);
    let stopped = false;
    const lane = async () => {
      for (let range = queue.shift(); range && !stopped; range = queue.shift()) {
        try {
          if (!(await this.readRange(range))) stopped = true;
        } catch (error) {
          stopped = true;
          this.failed = true;
          throw error;
        }
      }
    };
    const lanes = await Promise.allSettled(Array.from({ length: Math.max(1, inFlight) }, lane));
    const failed = lanes.find((l): l is PromiseRejectedResult => l.status === 'rejected');
    if (failed) throw failed.reason;
    return !stopped;
  }

  private async renewLease(): Promise<void> {
    try {
      await this.deps.catalog.acquireLease(this.deps.cluster, this.o.owner, this.o.leaseMs);
    } catch (error) {
      if (!(error instanceof KdrError && error.code === 'STATE_CONFLICT')) throw error;
      throw new StateError(
        'STATE_CONFLICT',
        `snapshot ${this.state.snapshotId}: this run (${this.o.owner}) lost the snapshot lease of ${this.deps.cluster} (${error.message}); it stops without writing its progress`,
        { cause: error, details: { snapshotId: this.state.snapshotId, owner: this.o.owner } },
      );
    }
  }

  /** Every run uploads at least one segment before it looks at the deadline, so a snapshot always ends. */
  private outOfTime(): boolean {
    if (this.failed) return true;
    return (
      this.uploadedThisRun > 0 &&
      this.o.deadline !== undefined &&
      this.o.clock() > this.o.deadline - DEADLINE_MARGIN_MS
    );
  }

  private report(): void {
    this.deps.onProgress?.({
      records: this.state.records,
      bytes: this.state.bytes,
      partitionsDone: this.state.ranges.filter((r) => r.next >= r.to).length,
      partitions: this.state.ranges.length,
    });
  }

  /**
   * Encodes a segment and starts its upload once the range's previous one is done (one upload in flight per
   * range: its progress moves in order); progress is saved after it.
   */
  private async flush(lane: Lane, range: RangeProgress, records: SourceRecord[]): Promise<void> {
    const segment = await encodeSegment(records, this.deps.compression);
    const ref: SegmentRef = {
      key: '',
      topic: range.topic,
      partition: range.partition,
      firstOffset: segment.firstOffset,
      lastOffset: segment.lastOffset,
      firstTimestamp: segment.firstTimestamp,
      lastTimestamp: segment.lastTimestamp,
      minTimestamp: segment.minTimestamp,
      records: segment.records,
      bytes: segment.bytes,
      size: segment.data.length,
      sha256: segment.sha256,
    };
    ref.key = segmentKey(this.o.prefix, this.deps.cluster, ref);
    await lane.uploading;
    lane.uploading = (async () => {
      await this.deps.objects.put(ref.key, segment.data, { contentType: 'application/octet-stream' });
      this.uploadedThisRun++;
      this.state.segments.push(ref);
      this.state.records += ref.records;
      this.state.bytes += ref.bytes;
      range.next = ref.lastOffset + 1;
      await this.save();
      this.report();
    })();
    // Its failure is thrown where the upload is awaited (the next flush, or the range's end), not while a
    // fetch is in flight as an unhandled rejection.
    lane.uploading.catch(() => {});
  }

  /**
   * Moves `range.next` to the partition's log start when the log start passed it, and saves the gap with the
   * progress. Called with no upload in flight.
   */
  private async clamp(range: RangeProgress, logStart: number): Promise<void> {
    const clamped = clampToLogStart(range, logStart, new Date(this.o.clock()).toISOString());
    if (!clamped.gap) return;
    const g = clamped.gap;
    this.state.gaps.push(g);
    this.state.warnings.push(
      `${g.topic}-${g.partition}: offsets ${g.from}-${g.to - 1} were deleted (retention or DeleteRecords) before this snapshot read them`,
    );
    this.o.log.warn('the log start passed what the snapshot had read: recorded a gap', { ...g });
    range.next = clamped.next;
    await this.save();
  }

  private async logStart(range: RangeProgress): Promise<number> {
    const [offsets] = await this.deps.reader.offsets(range.topic, [range.partition]);
    return offsets?.logStart ?? 0;
  }

  /**
   * A fetch that failed because the log start passed `offset` (OFFSET_OUT_OF_RANGE): what was read is
   * flushed, and reading resumes at the log start after a gap. Any other failure is thrown.
   */
  private async skipPurged(lane: Lane, range: RangeProgress, offset: number, error: unknown): Promise<void> {
    const logStart = await this.logStart(range).catch(() => {
      throw error;
    });
    if (logStart <= offset) throw error;
    await lane.uploading;
    // What lies between the last record read and `offset` was read too (markers, aborted records).
    range.next = Math.max(range.next, offset);
    await this.clamp(range, logStart);
  }

  /**
   * Reads what is left of one range; false when the deadline stopped it (progress saved by `pause`). The next
   * fetch is in flight while a fetched batch is cut into segments.
   */
  async readRange(range: RangeProgress): Promise<boolean> {
    await this.clamp(range, await this.logStart(range));
    const lane: Lane = { uploading: Promise.resolve() };
    try {
      return await this.readLane(range, lane);
    } finally {
      // A failure thrown while a segment uploads (a fetch, the log start) waits for it, and for its save:
      // the run must not write after it reported. The upload's own failure was thrown where it was awaited.
      await lane.uploading.catch(() => {});
    }
  }

  private async readLane(range: RangeProgress, lane: Lane): Promise<boolean> {
    let pending: SourceRecord[] = [];
    let pendingBytes = 0;
    let ahead: AheadFetch | undefined;
    let offset = range.next;
    while (offset < range.to) {
      if (this.outOfTime()) break;
      let fetched: FetchResult;
      try {
        fetched = await (ahead?.at === offset ? ahead.result : this.fetchAhead(range, offset).result);
      } catch (error) {
        ahead = undefined;
        if (pending.length > 0) await this.flush(lane, range, pending);
        pending = [];
        pendingBytes = 0;
        await this.skipPurged(lane, range, offset, error);
        offset = range.next;
        continue;
      }
      ahead =
        fetched.nextOffset > offset && fetched.nextOffset < range.to
          ? this.fetchAhead(range, fetched.nextOffset)
          : undefined;
      for (const record of fetched.records) {
        if (record.offset >= range.to) break;
        pending.push(record);
        pendingBytes += recordBytes(record);
        if (pendingBytes < this.deps.segmentBytes) continue;
        await this.flush(lane, range, pending);
        pending = [];
        pendingBytes = 0;
        // One fetch can hold many segments: the deadline is checked after each (the rest is read again).
        if (this.outOfTime()) break;
      }
      if (this.outOfTime()) break;
      if (fetched.nextOffset <= offset) break; // nothing committed left below the cut
      offset = fetched.nextOffset;
    }
    if (pending.length > 0) await this.flush(lane, range, pending);
    await lane.uploading;
    if (this.outOfTime()) return false;
    // The rest of the range held only markers or aborted records.
    range.next = range.to;
    return true;
  }

  /** A fetch started ahead; its failure is seen where it is awaited (or never, when the range stops first). */
  private fetchAhead(range: RangeProgress, at: number): AheadFetch {
    const result = this.deps.reader.fetch(range, at);
    result.catch(() => {});
    return { at, result };
  }

  async pause(): Promise<SnapshotResult> {
    await this.save();
    const left = this.state.ranges.filter((r) => r.next < r.to).length;
    this.o.log.info('snapshot paused; the next run continues it', {
      snapshotId: this.state.snapshotId,
      records: this.state.records,
      partitionsLeft: left,
    });
    return {
      status: 'in-progress',
      snapshotId: this.state.snapshotId,
      records: this.state.records,
      bytes: this.state.bytes,
      segments: this.state.segments.length,
      partitionsLeft: left,
    };
  }

  /**
   * Writes the manifest (never over an existing one: a snapshot without its manifest does not exist), indexes
   * it and deletes the progress. Idempotent: a run cut after the manifest put or after the index finds the
   * manifest of this very snapshot already there, and finishes the index and the progress delete.
   */
  async complete(): Promise<SnapshotManifest> {
    const { deps, state } = this;
    // Still ours: a runner that lost the lease must not index, nor delete a newer snapshot's progress.
    await this.renewLease();
    const manifestAt = manifestKey(this.o.prefix, state.snapshotId);
    let manifest = await this.buildManifest();
    try {
      await deps.objects.put(manifestAt, JSON.stringify(manifest, null, 2), {
        ifNoneMatch: true,
        contentType: 'application/json',
      });
    } catch (error) {
      if (!(error instanceof KdrError && error.code === 'STORE_CONDITION_FAILED')) throw error;
      const existing = await loadManifest(deps.objects, state.snapshotId, this.o.prefix);
      if (existing.cluster !== deps.cluster || existing.cutAt !== state.cutAt) throw error;
      this.o.log.info('the manifest was written by an earlier run; finishing the snapshot', {
        snapshotId: state.snapshotId,
      });
      manifest = existing;
    }
    await deps.catalog.index(indexEntry(manifest, this.o.prefix));
    await deps.objects.delete([this.o.key]);
    this.o.log.info('snapshot complete', {
      snapshotId: manifest.snapshotId,
      records: manifest.records,
      segments: manifest.newSegments,
    });
    return manifest;
  }

  private async buildManifest(): Promise<SnapshotManifest> {
    const { deps, state } = this;
    const parent = state.parent ? await loadManifest(deps.objects, state.parent, this.o.prefix) : null;
    const inherited = new Set(
      state.ranges.filter((r) => r.inherits).map((r) => `${r.topic}\u0000${r.partition}`),
    );
    return {
      format: SNAPSHOT_FORMAT,
      snapshotId: state.snapshotId,
      parent: state.parent,
      pair: deps.pair,
      cluster: deps.cluster,
      startedAt: state.startedAt,
      cutAt: state.cutAt,
      completedAt: new Date(this.o.clock()).toISOString(),
      topics: state.topics,
      cut: state.cut,
      groups: state.groups,
      clamped: state.clamped,
      segments: chainSegments(parent, inherited, state.segments),
      // In log order: partitions read at the same time find their gaps in any order.
      gaps: [
        ...(parent?.gaps ?? []).filter((g) => inherited.has(`${g.topic}\u0000${g.partition}`)),
        ...state.gaps,
      ].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition || a.from - b.from),
      records: state.records,
      bytes: state.bytes,
      newSegments: state.segments.length,
    };
  }
}

/** What a record weighs in a segment, roughly (the segment's size limit is on this). */
function recordBytes(record: SourceRecord): number {
  let bytes = 32 + (record.key?.length ?? 0) + (record.value?.length ?? 0);
  for (const h of record.headers) bytes += 8 + h.key.length + (h.value?.length ?? 0);
  return bytes;
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

/** A segment's records, refused when its bytes do not match the manifest's checksum. */
export async function readSegment(objects: ObjectStore, ref: SegmentRef): Promise<SourceRecord[]> {
  return decodeSegment(await objects.get(ref.key), ref.sha256);
}

/** What is wrong when a segment does not hold as many records as the manifest says. */
export function recordCountProblem(ref: SegmentRef, records: readonly SourceRecord[]): string | null {
  return records.length === ref.records
    ? null
    : `holds ${records.length} records, the manifest says ${ref.records}`;
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
      records = await readSegment(deps.objects, ref);
    } catch (error) {
      result.bad.push({
        key: ref.key,
        problem: error instanceof NotFoundError ? 'missing' : (error as Error).message,
      });
      continue;
    }
    const countProblem = recordCountProblem(ref, records);
    if (countProblem) result.bad.push({ key: ref.key, problem: countProblem });
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
