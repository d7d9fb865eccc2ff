/**
 * Snapshots, decided without I/O: the cut, the ranges each snapshot must read given its parent, the
 * manifest that names every segment a restore needs, and which segments a prune may delete.
 *
 * Consistency. Group offsets are read first, partition end offsets (last stable offsets) second: a group
 * commits at most what it could read, and the last stable offset only grows, so every group offset is at
 * or below the cut, except for consumers reading uncommitted data, which are clamped and reported. Within
 * a partition the cut is the last stable offset, so it never falls inside an open transaction. Across
 * partitions Kafka offers no atomic view: a transaction spanning partitions can be in the snapshot on one
 * partition and not yet on another.
 */

export const SNAPSHOT_FORMAT = 'kdr-snapshot-v1';

export interface SegmentRef {
  key: string;
  topic: string;
  partition: number;
  /** First and last record offsets in the segment. */
  firstOffset: number;
  lastOffset: number;
  firstTimestamp: number;
  lastTimestamp: number;
  /** The oldest record's timestamp; absent in segments written before it was recorded. */
  minTimestamp?: number;
  records: number;
  /** Uncompressed size of the records; `size` is the object's size. */
  bytes: number;
  size: number;
  sha256: string;
}

export interface Gap {
  topic: string;
  partition: number;
  /**
   * Offsets [from, to) that left the log (retention, DeleteRecords, a purge) before this snapshot read them:
   * before the snapshot started, or while it was reading (the log start passed what it had read so far).
   */
  from: number;
  to: number;
  /** Offsets in the gap (to - from): at most this many records are lost (markers and aborted records take offsets too). */
  count: number;
  /** When the snapshot saw the log start past `from` (ISO time). */
  seenAt: string;
}

/** A gap as a manifest holds it: manifests (and progress) written before `count` and `seenAt` lack them. */
export type StoredGap = Omit<Gap, 'count' | 'seenAt'> & Partial<Pick<Gap, 'count' | 'seenAt'>>;

/** Old gaps were all found when the cut was taken (planRanges), so `seenAt` is the cut's time. */
export function withGapDefaults(gaps: StoredGap[] | undefined, cutAt: string): Gap[] {
  return (gaps ?? []).map((g) => ({ ...g, count: g.count ?? g.to - g.from, seenAt: g.seenAt ?? cutAt }));
}

/** A manifest as read from the store, old ones included, with every gap's count and seenAt. */
export function normalizeManifest(m: SnapshotManifest): SnapshotManifest & { gaps: Gap[] } {
  return { ...m, gaps: withGapDefaults(m.gaps, m.cutAt) };
}

function gap(p: { topic: string; partition: number }, from: number, to: number, seenAt: string): Gap {
  return { topic: p.topic, partition: p.partition, from, to, count: to - from, seenAt };
}

/**
 * Every read is clamped to the partition's current log start: when the log start passed `next` (retention or
 * DeleteRecords while the snapshot was reading, or between two of its runs), reading resumes at the log start
 * and [next, logStart) is a gap of this snapshot, never a fetch retried for ever.
 */
export function clampToLogStart(
  range: { topic: string; partition: number; next: number; to: number },
  logStart: number,
  seenAt: string,
): { next: number; gap?: Gap } {
  if (logStart <= range.next || range.next >= range.to) return { next: range.next };
  const next = Math.min(logStart, range.to);
  return { next, gap: gap(range, range.next, next, seenAt) };
}

/** `cleanup.policy` holds `compact` (alone or with `delete`). */
export function isCompacted(cleanupPolicy: string | null | undefined): boolean {
  return (cleanupPolicy ?? '')
    .split(',')
    .map((p) => p.trim())
    .includes('compact');
}

export interface PartitionCut {
  /** Where this snapshot's own reading started (the parent's end, or the log start). */
  start: number;
  /** The cut: the last stable offset; the snapshot holds every committed record below it. */
  end: number;
}

export interface TopicInfo {
  /** The topic's id on the cluster at the cut (absent when the cluster did not report one). */
  topicId?: string;
  partitions: number;
  /** Configs set on the topic itself. */
  configs: Record<string, string>;
  replicationFactor: number;
}

export interface ClampedGroup {
  group: string;
  topic: string;
  partition: number;
  committed: number;
  clampedTo: number;
}

export interface SnapshotManifest {
  format: typeof SNAPSHOT_FORMAT;
  snapshotId: string;
  parent: string | null;
  pair: string;
  cluster: string;
  startedAt: string;
  /** When the cut was taken: `restore --at` picks the newest snapshot cut at or before a time. */
  cutAt: string;
  completedAt: string;
  topics: Record<string, TopicInfo>;
  cut: Record<string, Record<string, PartitionCut>>;
  groups: Record<string, Record<string, Record<string, number>>>;
  clamped: ClampedGroup[];
  /** Every segment a restore needs, the parent chain's included, in topic/partition/offset order. */
  segments: SegmentRef[];
  /** Offsets this snapshot (with its chain) lacks; `loadManifest` fills in what old manifests lack. */
  gaps: StoredGap[];
  /** Records and bytes this snapshot read (not the chain's). */
  records: number;
  bytes: number;
  newSegments: number;
}

/** Time-sortable and unique: 20261124T193000Z-3fa9. */
export function snapshotId(at: number, random: string): string {
  return `${new Date(at)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${random}`;
}

export const manifestKey = (prefix: string, id: string) => `${prefix}/manifests/${id}.json`;

/**
 * Where a segment lives. The checksum is part of the name: a compacted partition is read whole again by every
 * snapshot, and the cleaner can remove records between two reads while the first and last offsets stay the
 * same; without it the new segment would overwrite the one an older snapshot references.
 */
export function segmentKey(
  prefix: string,
  cluster: string,
  ref: Pick<SegmentRef, 'topic' | 'partition' | 'firstOffset' | 'lastOffset' | 'sha256'>,
): string {
  const pad = (n: number) => String(n).padStart(20, '0');
  return `${prefix}/segments/${cluster}/${ref.topic}/${ref.partition}/${pad(ref.firstOffset)}-${pad(ref.lastOffset)}-${ref.sha256.slice(0, 16)}.kdrseg`;
}

/**
 * Where each partition's reading starts: after the parent's cut when the parent covered it and the log
 * still continues from there; from the log start otherwise (a new topic, or a topic recreated since).
 * Offsets below the log start that the parent did not hold are a gap, seen at `seenAt`.
 *
 * Compacted topics (`compacted`: cleanup.policy includes compact) are read whole, [logStart, cut), by every
 * snapshot and inherit nothing from the parent. Reading only [parent cut, cut) would let a deleted key come
 * back: the cleaner can remove both the parent's value of a key and the later tombstone before the child
 * reads its range, and a restore replaying parent + child would write the old value again. Read whole, a
 * snapshot holds the compacted log as it was when read, whatever the chain. The cost: every snapshot reads
 * and stores each compacted partition whole. What remains: a value below the cut that the cleaner removed
 * because of a newer value of the same key above the cut (written after the cut, cleaned before the read) is
 * missing from the snapshot, so a restore lacks that key where the cut had it; Kafka offers no way to read a
 * compacted log as of an offset.
 */
export function planRanges(input: {
  partitions: { topic: string; partition: number; logStart: number; end: number }[];
  parent?: (Pick<SnapshotManifest, 'cut'> & { topics?: SnapshotManifest['topics'] }) | null;
  /** Current topic ids: a topic whose id differs from the parent's was recreated since. */
  topicIds?: Record<string, string | undefined>;
  /** Topics whose cleanup.policy includes compact: read whole. */
  compacted?: ReadonlySet<string>;
  /** When the log starts were read (ISO time), for the gaps. */
  seenAt: string;
}): {
  ranges: { topic: string; partition: number; from: number; to: number; inherits: boolean }[];
  gaps: Gap[];
  warnings: string[];
} {
  const ranges: { topic: string; partition: number; from: number; to: number; inherits: boolean }[] = [];
  const gaps: Gap[] = [];
  const warnings: string[] = [];
  for (const p of input.partitions) {
    const parentCut = input.parent?.cut[p.topic]?.[String(p.partition)];
    const parentId = input.parent?.topics?.[p.topic]?.topicId;
    const currentId = input.topicIds?.[p.topic];
    const recreated = parentId !== undefined && currentId !== undefined && parentId !== currentId;
    const continues = parentCut !== undefined && parentCut.end <= p.end && !recreated;
    let from: number;
    let inherits = false;
    if (continues && !input.compacted?.has(p.topic)) {
      from = parentCut.end;
      inherits = true;
    } else {
      // Read from the start: a compacted topic (see above), a new topic, or one recreated since the parent.
      if (parentCut && recreated) {
        if (p.partition === 0)
          warnings.push(
            `${p.topic} was recreated since the parent snapshot (topic id ${parentId} is now ${currentId}): it is read again from its start`,
          );
      } else if (parentCut && !continues) {
        warnings.push(
          `${p.topic}-${p.partition} ends at ${p.end}, before the parent's cut ${parentCut.end}: the topic was recreated; it is read again from its start`,
        );
      }
      from = 0;
    }
    const clamped = clampToLogStart({ ...p, next: from, to: p.end }, p.logStart, input.seenAt);
    if (clamped.gap) gaps.push(clamped.gap);
    ranges.push({ topic: p.topic, partition: p.partition, from: clamped.next, to: p.end, inherits });
  }
  return { ranges, gaps, warnings };
}

/** Group offsets above the cut (a consumer reading uncommitted records) are clamped to the cut. */
export function clampGroups(
  groups: { group: string; topic: string; partition: number; offset: number }[],
  cut: Record<string, Record<string, PartitionCut>>,
): { groups: SnapshotManifest['groups']; clamped: ClampedGroup[] } {
  const out: SnapshotManifest['groups'] = {};
  const clamped: ClampedGroup[] = [];
  for (const g of groups) {
    const end = cut[g.topic]?.[String(g.partition)]?.end;
    if (end === undefined) continue;
    let offset = g.offset;
    if (offset > end) {
      clamped.push({
        group: g.group,
        topic: g.topic,
        partition: g.partition,
        committed: offset,
        clampedTo: end,
      });
      offset = end;
    }
    out[g.group] ??= {};
    out[g.group]![g.topic] ??= {};
    out[g.group]![g.topic]![String(g.partition)] = offset;
  }
  return { groups: out, clamped };
}

/** The parent's segments still needed (for partitions this snapshot continues) followed by the new ones. */
export function chainSegments(
  parent: Pick<SnapshotManifest, 'segments'> | null | undefined,
  inherited: Set<string>,
  fresh: SegmentRef[],
): SegmentRef[] {
  const kept = (parent?.segments ?? []).filter((s) => inherited.has(`${s.topic}\u0000${s.partition}`));
  return [...kept, ...fresh].sort(
    (a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition || a.firstOffset - b.firstOffset,
  );
}

/** Mark and sweep: segment objects no remaining manifest (nor a snapshot in progress) references. */
export function unreferenced(objects: string[], keep: Iterable<string>): string[] {
  const live = new Set(keep);
  return objects.filter((key) => !live.has(key)).sort();
}

/** Which snapshots a prune removes: beyond the newest `keep`, or older than `olderThanMs`. */
export function selectForPrune(
  snapshots: { snapshotId: string; cutAt: string }[],
  rule: { keep?: number; olderThanMs?: number },
  now: number,
): string[] {
  const sorted = [...snapshots].sort(
    (a, b) => b.cutAt.localeCompare(a.cutAt) || b.snapshotId.localeCompare(a.snapshotId),
  );
  return sorted
    .filter((s, index) => {
      if (rule.keep !== undefined && index >= rule.keep) return true;
      if (rule.olderThanMs !== undefined && now - Date.parse(s.cutAt) > rule.olderThanMs) return true;
      return false;
    })
    .map((s) => s.snapshotId);
}

/** "7d", "12h", "30m", "45s" → milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)\s*(d|h|m|s)$/.exec(text.trim());
  if (!match)
    throw new RangeError(`expected a duration such as 7d, 12h, 30m or 45s, got ${JSON.stringify(text)}`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[match[2] as 'd' | 'h' | 'm' | 's'];
  return Number(match[1]) * unit;
}
