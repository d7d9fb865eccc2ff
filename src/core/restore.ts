import { createHash } from 'node:crypto';
import type { Header, SourceRecord } from './records.ts';
import type { SegmentRef, SnapshotManifest } from './snapshot.ts';
import { isInternalTopic } from './topicSync.ts';

/**
 * Restores, decided without I/O: which snapshot a time picks, how snapshot topics map to target topics,
 * where each record goes, how a restore recognises what it already wrote, and where each consumer group
 * resumes on the restored topics.
 *
 * Exactly once. Every restored record carries `kdr.snapshot` = `<snapshotId>/<topic>/<partition>/<offset>`
 * (its place in the snapshot). A restore writes in Kafka transactions under one transactional id, so a
 * second process of the same restore fences the first; after a crash, the target partitions' tails
 * (read_committed, from where the last saved progress ends) tell which records already arrived.
 */

export const RESTORE_HEADER = 'kdr.snapshot';
/** With `--restamp`: the record's original timestamp (ms since the epoch, decimal), its own timestamp being the restore's time. */
export const RESTAMP_HEADER = 'kdr.ts';
/** Kafka's log.retention.hours default (168 h): what a topic without retention.ms of its own gets. */
export const BROKER_DEFAULT_RETENTION_MS = 604_800_000;

export type RestoreMode = 'new' | 'append' | 'replace';

export interface SnapshotOrigin {
  snapshotId: string;
  topic: string;
  partition: number;
  offset: number;
}

export function formatOrigin(o: SnapshotOrigin): string {
  return `${o.snapshotId}/${o.topic}/${o.partition}/${o.offset}`;
}

/** The snapshot origin of a restored record (its last `kdr.snapshot` header), or null. */
export function originOfRestored(headers: readonly Header[]): SnapshotOrigin | null {
  let value: Buffer | null | undefined;
  for (const h of headers) if (h.key === RESTORE_HEADER) value = h.value;
  if (!value) return null;
  // Topic names cannot contain '/', snapshot ids neither: exactly four parts.
  const parts = value.toString('utf8').split('/');
  if (parts.length !== 4) return null;
  const [snapshotId, topic, partition, offset] = parts as [string, string, string, string];
  if (!/^\d+$/.test(partition) || !/^\d+$/.test(offset)) return null;
  return { snapshotId, topic, partition: Number(partition), offset: Number(offset) };
}

/**
 * Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), the hash of its default partitioner:
 * a keyed record lands where a Java producer would put it.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const seed = 0x9747b28c;
  const m = 0x5bd1e995;
  const r = 24;
  let h = (seed ^ length) | 0;
  const length4 = length >> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k =
      (data[i4]! & 0xff) |
      ((data[i4 + 1]! & 0xff) << 8) |
      ((data[i4 + 2]! & 0xff) << 16) |
      ((data[i4 + 3]! & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const tail = length4 * 4;
  // The tail bytes, as Java's switch with fall-through mixes them.
  const rest = length % 4;
  if (rest === 3) h ^= (data[tail + 2]! & 0xff) << 16;
  if (rest >= 2) h ^= (data[tail + 1]! & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[tail]! & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * The target partition of a record when the target topic's partition count differs from the snapshot's:
 * keyed records as Kafka's default partitioner places them (per-key order is kept); records without a key
 * stay with their source partition modulo the count (deterministic, so a resumed restore agrees).
 */
export function targetPartition(record: Pick<SourceRecord, 'key'>, sourcePartition: number, count: number) {
  if (record.key === null) return sourcePartition % count;
  return (murmur2(record.key) & 0x7fffffff) % count;
}

/** The newest snapshot cut at or before `at` (a consistent cut), or undefined. */
export function snapshotAt<T extends Pick<SnapshotManifest, 'cutAt' | 'snapshotId'>>(
  manifests: readonly T[],
  at: number,
): T | undefined {
  return [...manifests]
    .filter((m) => Date.parse(m.cutAt) <= at)
    .sort((a, b) => a.cutAt.localeCompare(b.cutAt) || a.snapshotId.localeCompare(b.snapshotId))
    .at(-1);
}

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

export interface TopicMappingOptions {
  /** Snapshot topics to restore (anchored regex); all by default. */
  topics?: string;
  /** FROM:TO pairs. */
  rename?: readonly string[];
  /** Prepended to every target topic name not renamed explicitly. */
  topicPrefix?: string;
}

/** Snapshot topic → target topic; throws RangeError naming the bad value. */
export function mapTopics(
  snapshotTopics: readonly string[],
  options: TopicMappingOptions,
): Map<string, string> {
  let select: RegExp;
  try {
    select = new RegExp(`^(?:${options.topics ?? '.*'})$`);
  } catch (error) {
    throw new RangeError(
      `expected --topics to be a regular expression, got ${JSON.stringify(options.topics)} (${(error as Error).message})`,
    );
  }
  if (options.topicPrefix !== undefined && !/^[A-Za-z0-9._-]{1,200}$/.test(options.topicPrefix))
    throw new RangeError(
      `expected --topic-prefix of letters, digits, ".", "_" or "-" (at most 200), got ${JSON.stringify(options.topicPrefix)}`,
    );
  const renames = new Map<string, string>();
  for (const spec of options.rename ?? []) {
    const parts = spec.split(':');
    if (parts.length !== 2 || !parts[0] || !parts[1])
      throw new RangeError(`expected --rename FROM:TO, got ${JSON.stringify(spec)}`);
    const [from, to] = parts as [string, string];
    if (!snapshotTopics.includes(from))
      throw new RangeError(
        `--rename ${spec}: the snapshot has no topic ${JSON.stringify(from)} (it has ${snapshotTopics.join(', ') || 'none'})`,
      );
    if (!TOPIC_NAME.test(to) || to === '.' || to === '..')
      throw new RangeError(`--rename ${spec}: ${JSON.stringify(to)} is not a valid topic name`);
    if (renames.has(from)) throw new RangeError(`--rename names ${JSON.stringify(from)} twice`);
    renames.set(from, to);
  }
  const mapping = new Map<string, string>();
  for (const topic of [...snapshotTopics].sort()) {
    if (!renames.has(topic) && !select.test(topic)) continue;
    const target = renames.get(topic) ?? `${options.topicPrefix ?? ''}${topic}`;
    if (target.length > 249)
      throw new RangeError(`target topic name ${target} is longer than 249 characters`);
    if (isInternalTopic(target))
      throw new RangeError(`refusing to restore into the internal topic ${target}`);
    mapping.set(topic, target);
  }
  const targets = [...mapping.values()];
  const twice = targets.find((t, i) => targets.indexOf(t) !== i);
  if (twice) throw new RangeError(`two snapshot topics would be restored into the same topic ${twice}`);
  if (mapping.size === 0)
    throw new RangeError(
      `no topic of the snapshot is selected by --topics ${JSON.stringify(options.topics ?? '.*')} (it has ${snapshotTopics.join(', ') || 'none'})`,
    );
  return mapping;
}

/** A restore's identity: the same snapshot, target and mapping resume the same restore. */
export function restoreId(input: {
  snapshotId: string;
  target: string;
  mapping: ReadonlyMap<string, string>;
  mode: RestoreMode;
}): string {
  const hash = createHash('sha256')
    .update(JSON.stringify([input.snapshotId, input.target, [...input.mapping], input.mode]))
    .digest('hex')
    .slice(0, 12);
  return `${input.snapshotId}-${hash}`;
}

export interface TargetTopicState {
  exists: boolean;
  partitions: number;
  /** Records between log start and end, summed over partitions (0: empty). */
  records: number;
  /** The existing topic's effective configs (its own, the broker's or Kafka's defaults). */
  configs?: Record<string, string>;
}

/**
 * The time retention the restored topic will have. `retentionMs` null: none (retention.ms=-1, a compacted
 * topic without `delete`, or an existing topic that stamps records itself with LogAppendTime).
 */
export interface RestoredRetention {
  retentionMs: number | null;
  from: 'option' | 'snapshot' | 'target' | 'broker-default' | 'compacted' | 'log-append-time';
}

const retentionValue = (value: string): number | null => {
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : null;
};

/** Whose retention.ms a restored topic gets: --retention-ms, else the existing target's, else the snapshot's, else the broker default. */
export function restoredRetention(input: {
  action: TopicPlan['action'];
  snapshotConfigs: Readonly<Record<string, string>>;
  targetConfigs?: Readonly<Record<string, string>> | undefined;
  retentionMs?: number | undefined;
}): RestoredRetention {
  const own = input.action === 'use' ? (input.targetConfigs ?? {}) : input.snapshotConfigs;
  const policy = (own['cleanup.policy'] ?? 'delete').split(',').map((p) => p.trim());
  if (!policy.includes('delete')) return { retentionMs: null, from: 'compacted' };
  if (input.action === 'use' && own['message.timestamp.type'] === 'LogAppendTime')
    return { retentionMs: null, from: 'log-append-time' };
  if (input.retentionMs !== undefined)
    return { retentionMs: input.retentionMs < 0 ? null : input.retentionMs, from: 'option' };
  const value = own['retention.ms'];
  if (value !== undefined)
    return { retentionMs: retentionValue(value), from: input.action === 'use' ? 'target' : 'snapshot' };
  return { retentionMs: BROKER_DEFAULT_RETENTION_MS, from: 'broker-default' };
}

/** `--retention-ms`: a whole number of milliseconds, -1 for no limit (as Kafka's retention.ms). */
export function parseRetentionMs(value: unknown): number {
  const text = typeof value === 'number' ? String(value) : value;
  if (
    typeof text !== 'string' ||
    !/^(-1|0|[1-9][0-9]{0,17})$/.test(text) ||
    !Number.isSafeInteger(Number(text))
  )
    throw new RangeError(
      `expected --retention-ms as a whole number of milliseconds (-1: no limit) up to ${Number.MAX_SAFE_INTEGER}, got ${JSON.stringify(value)}`,
    );
  return Number(text);
}

/** Records of a restored topic already past its retention when the restore was planned (at `asOf`). */
export interface PastRetention {
  records: number;
  /** The oldest such record's timestamp, or null when there is none. */
  oldestTimestamp: number | null;
}

/**
 * Adds the records older than `retentionMs` at `asOf` to `into`. The broker deletes a log segment once its
 * newest record is past retention (Kafka: now - largestTimestamp > retention.ms): these records go as soon
 * as the rest of their segment is past it too, at once when they are the newest.
 */
export function countPastRetention(
  records: readonly Pick<SourceRecord, 'timestamp'>[],
  retentionMs: number | null,
  asOf: number,
  into: PastRetention,
): PastRetention {
  if (retentionMs === null) return into;
  const threshold = asOf - retentionMs;
  for (const r of records) {
    if (r.timestamp >= threshold) continue;
    into.records++;
    if (into.oldestTimestamp === null || r.timestamp < into.oldestTimestamp)
      into.oldestTimestamp = r.timestamp;
  }
  return into;
}

/** Why records past retention stop a restore: one sentence per topic, naming the count, limit and remedy. */
export function pastRetentionProblem(
  target: string,
  retention: RestoredRetention,
  past: PastRetention,
  asOf: number,
): string | null {
  if (past.records === 0 || retention.retentionMs === null || past.oldestTimestamp === null) return null;
  const limit =
    retention.from === 'option'
      ? `--retention-ms=${retention.retentionMs}`
      : `its retention.ms=${retention.retentionMs}${retention.from === 'broker-default' ? ' (the broker default, 7 days)' : ''}`;
  const needed = asOf - past.oldestTimestamp;
  return `${past.records} records of topic ${target} are older than ${limit} (oldest at ${new Date(past.oldestTimestamp).toISOString()}); the broker would delete them right after the restore; pass --retention-ms <ms> to restore with a longer retention, or --restamp to give them new timestamps (the original kept in header ${RESTAMP_HEADER}); --retention-ms above ${needed} keeps them all now, -1 for ever`;
}

export interface TopicPlan {
  source: string;
  target: string;
  sourcePartitions: number;
  targetPartitions: number;
  repartitioned: boolean;
  /** create: the topic does not exist; use: it exists (empty, or appended to); recreate: replace mode. */
  action: 'create' | 'use' | 'recreate';
  configs: Record<string, string>;
  /** Configs changed on an existing (`use`) topic before writing: retention.ms with --retention-ms. */
  alter: Record<string, string>;
  /** The retention the restored topic will have, and how many of its records are past it (once counted). */
  retention: RestoredRetention;
  replicationFactor: number;
  records: number;
  bytes: number;
  segments: SegmentRef[];
}

export interface RestorePlan {
  topics: TopicPlan[];
  records: number;
  bytes: number;
  groups: string[];
  warnings: string[];
}

const LONG_MAX = '9223372036854775807';

/**
 * What a restore will do, or a RangeError naming why it must not start (nothing is written before this
 * returns): creates, uses or recreates each target topic; refuses non-empty topics in `new` mode.
 */
export function planRestore(input: {
  manifest: Pick<SnapshotManifest, 'topics' | 'segments' | 'groups' | 'gaps'>;
  mapping: ReadonlyMap<string, string>;
  mode: RestoreMode;
  targets: ReadonlyMap<string, TargetTopicState>;
  targetBrokers: number;
  /** Target topics this same restore already wrote (a resumed restore may find them non-empty). */
  resumed?: boolean;
  /** --retention-ms: the restored topics' retention.ms (-1: no limit). */
  retentionMs?: number;
}): RestorePlan {
  const { manifest, mapping, mode, targets } = input;
  const warnings: string[] = [];
  const topics: TopicPlan[] = [];
  const problems: string[] = [];
  for (const [source, target] of mapping) {
    const info = manifest.topics[source]!;
    const state = targets.get(target) ?? { exists: false, partitions: 0, records: 0 };
    let action: TopicPlan['action'];
    if (mode === 'replace') action = 'recreate';
    else if (!state.exists) action = 'create';
    else {
      if (mode === 'new' && state.records > 0 && !input.resumed)
        problems.push(
          `topic ${target} exists and holds ${state.records} records: --mode new never writes into a non-empty topic (use --mode append, or --mode replace --yes)`,
        );
      action = 'use';
    }
    const targetPartitions = action === 'use' ? state.partitions : info.partitions;
    const configs: Record<string, string> = { ...info.configs };
    const replicationFactor = Math.max(1, Math.min(info.replicationFactor, input.targetBrokers));
    if (action !== 'use') {
      if (configs['message.timestamp.type'] === 'LogAppendTime')
        warnings.push(
          `topic ${target} is created with message.timestamp.type=CreateTime (the snapshot's topic used LogAppendTime) so that the original timestamps are kept`,
        );
      configs['message.timestamp.type'] = 'CreateTime';
      configs['message.timestamp.before.max.ms'] = LONG_MAX;
      configs['message.timestamp.after.max.ms'] = LONG_MAX;
      const minIsr = Number(configs['min.insync.replicas'] ?? 1);
      if (minIsr > replicationFactor) {
        warnings.push(
          `topic ${target}: min.insync.replicas ${minIsr} lowered to ${replicationFactor}, the replication factor the target allows`,
        );
        configs['min.insync.replicas'] = String(replicationFactor);
      }
    }
    const retention = restoredRetention({
      action,
      snapshotConfigs: info.configs,
      targetConfigs: state.configs,
      retentionMs: input.retentionMs,
    });
    const alter: Record<string, string> = {};
    if (input.retentionMs !== undefined) {
      if (action === 'use') {
        if (state.configs?.['retention.ms'] !== String(input.retentionMs)) {
          alter['retention.ms'] = String(input.retentionMs);
          warnings.push(
            `topic ${target} exists: its retention.ms is set to ${input.retentionMs} (it was ${state.configs?.['retention.ms'] ?? 'unknown'})`,
          );
        }
      } else configs['retention.ms'] = String(input.retentionMs);
    }
    const repartitioned = targetPartitions !== info.partitions;
    if (repartitioned)
      warnings.push(
        `topic ${target} has ${targetPartitions} partitions, the snapshot's ${source} had ${info.partitions}: records are re-partitioned by key (Kafka's murmur2), and group positions on it are set so that nothing is skipped (records consumed before the cut may be read again)`,
      );
    const segments = manifest.segments.filter((s) => s.topic === source);
    topics.push({
      source,
      target,
      sourcePartitions: info.partitions,
      targetPartitions,
      repartitioned,
      action,
      configs: action === 'use' ? {} : configs,
      alter,
      retention,
      replicationFactor,
      records: segments.reduce((n, s) => n + s.records, 0),
      bytes: segments.reduce((n, s) => n + s.bytes, 0),
      segments,
    });
  }
  if (problems.length > 0) throw new RangeError(problems.join('; '));
  for (const gap of manifest.gaps)
    if (mapping.has(gap.topic))
      warnings.push(
        `${gap.topic}-${gap.partition}: offsets ${gap.from}-${gap.to - 1} were deleted by retention before the snapshot read them; they cannot be restored`,
      );
  const groups = Object.keys(manifest.groups)
    .filter((g) => Object.keys(manifest.groups[g]!).some((t) => mapping.has(t)))
    .sort();
  return {
    topics,
    records: topics.reduce((n, t) => n + t.records, 0),
    bytes: topics.reduce((n, t) => n + t.bytes, 0),
    groups,
    warnings,
  };
}

/** Where a group position (a source partition's committed offset) lands on each target partition. */
export type Landing = Record<string, number>;

/** Stands for "nothing read yet" of a source partition: every record is at or after it. */
export const START_POSITION = -1;

/**
 * Tracks, while records are written, the target offset of the first restored record at or after each
 * group position, per target partition: what the groups' restored offsets are made of. Every source
 * partition also has the position START_POSITION (where a group that never committed it resumes).
 */
export class PositionTracker {
  /** key `<topic>/<partition>` → sorted distinct positions of that source partition. */
  private readonly positions = new Map<string, number[]>();
  /** key `<topic>/<partition>/<position>` → target partition → first target offset. */
  readonly landings: Record<string, Landing>;

  constructor(
    groups: SnapshotManifest['groups'],
    partitions: ReadonlyMap<string, number>,
    landings: Record<string, Landing> = {},
  ) {
    this.landings = landings;
    const add = (topic: string, partition: number, offset: number) => {
      const key = `${topic}/${partition}`;
      const list = this.positions.get(key) ?? [];
      if (!list.includes(offset)) list.push(offset);
      this.positions.set(
        key,
        list.sort((a, b) => a - b),
      );
    };
    for (const [topic, count] of partitions) for (let p = 0; p < count; p++) add(topic, p, START_POSITION);
    for (const byTopic of Object.values(groups))
      for (const [topic, byPartition] of Object.entries(byTopic))
        if (partitions.has(topic))
          for (const [partition, offset] of Object.entries(byPartition))
            add(topic, Number(partition), offset);
  }

  /** A record of the snapshot (topic, partition, offset) was written at (targetPartition, targetOffset). */
  written(
    topic: string,
    partition: number,
    offset: number,
    targetPartition: number,
    targetOffset: number,
  ): void {
    const list = this.positions.get(`${topic}/${partition}`);
    if (!list) return;
    for (const position of list) {
      if (position > offset) break;
      const key = `${topic}/${partition}/${position}`;
      const landing = this.landings[key] ?? {};
      this.landings[key] = landing;
      // Records of one source partition reach a target partition in offset order: the first one wins.
      if (landing[targetPartition] === undefined) landing[targetPartition] = targetOffset;
    }
  }
}

/**
 * A group's committed offsets on a restored topic. Same partition count: the target offset of the first
 * restored record at or after the group's position (the target's end when it had read everything).
 * Re-partitioned: per target partition, the lowest landing of any source partition's position, so that no
 * unread record is skipped (records of other source partitions consumed before the cut may come again);
 * a source partition the group never committed counts as unread from its start.
 */
export function groupTargetOffsets(input: {
  /** The group's committed offsets on the snapshot topic, by source partition. */
  positions: Record<string, number>;
  topic: Pick<TopicPlan, 'source' | 'sourcePartitions' | 'targetPartitions' | 'repartitioned'>;
  landings: Record<string, Landing>;
  /** Target end offsets after the restore. */
  ends: readonly number[];
}): { partition: number; offset: number }[] {
  const { positions, topic, landings, ends } = input;
  const landing = (p: number, position: number) => landings[`${topic.source}/${p}/${position}`];
  const out: { partition: number; offset: number }[] = [];
  if (!topic.repartitioned) {
    for (const [partition, offset] of Object.entries(positions)) {
      const p = Number(partition);
      out.push({ partition: p, offset: landing(p, offset)?.[p] ?? ends[p]! });
    }
    return out.sort((a, b) => a.partition - b.partition);
  }
  for (let t = 0; t < topic.targetPartitions; t++) {
    let lowest = ends[t]!;
    for (let p = 0; p < topic.sourcePartitions; p++) {
      const landed = landing(p, positions[String(p)] ?? START_POSITION)?.[t];
      if (landed !== undefined && landed < lowest) lowest = landed;
    }
    out.push({ partition: t, offset: lowest });
  }
  return out;
}
