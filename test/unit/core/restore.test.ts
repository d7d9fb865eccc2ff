import { describe, expect, it } from 'vitest';
import {
  BROKER_DEFAULT_RETENTION_MS,
  countPastRetention,
  formatOrigin,
  groupTargetOffsets,
  mapTopics,
  murmur2,
  originOfRestored,
  PositionTracker,
  parseRetentionMs,
  pastRetentionProblem,
  planRestore,
  RESTORE_HEADER,
  restoredRetention,
  restoreId,
  snapshotAt,
  type TargetTopicState,
  targetPartition,
} from '../../../src/core/restore.ts';
import type { SegmentRef, SnapshotManifest } from '../../../src/core/snapshot.ts';

describe('murmur2', () => {
  it("matches Kafka's own test vectors (UtilsTest.testMurmur2)", () => {
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [input, expected] of cases) expect(murmur2(Buffer.from(input)), input).toBe(expected);
  });

  it('places keyed records like the default partitioner, keyless ones by their source partition', () => {
    const key = Buffer.from('foobar');
    expect(targetPartition({ key }, 5, 7)).toBe((-790332482 & 0x7fffffff) % 7);
    expect(targetPartition({ key: null }, 5, 3)).toBe(2);
    expect(targetPartition({ key: Buffer.alloc(0) }, 1, 4)).toBe((murmur2(Buffer.alloc(0)) & 0x7fffffff) % 4);
  });
});

describe('restore provenance', () => {
  it('round-trips the snapshot origin header and takes the last one', () => {
    const origin = { snapshotId: '20261125T100000Z-ab12', topic: 'orders.v1', partition: 3, offset: 42 };
    const headers = [
      { key: RESTORE_HEADER, value: Buffer.from('old/x/0/1') },
      { key: 'app', value: null },
      { key: RESTORE_HEADER, value: Buffer.from(formatOrigin(origin)) },
    ];
    expect(originOfRestored(headers)).toEqual(origin);
    expect(originOfRestored([{ key: RESTORE_HEADER, value: Buffer.from('a/b/c') }])).toBeNull();
    expect(originOfRestored([{ key: 'other', value: Buffer.from('a/b/0/1') }])).toBeNull();
  });
});

describe('snapshotAt', () => {
  const list = [
    { snapshotId: 'b', cutAt: '2026-11-25T02:00:00.000Z' },
    { snapshotId: 'a', cutAt: '2026-11-25T01:00:00.000Z' },
    { snapshotId: 'c', cutAt: '2026-11-25T03:00:00.000Z' },
  ];
  it('picks the newest cut at or before the time', () => {
    expect(snapshotAt(list, Date.parse('2026-11-25T02:30:00Z'))?.snapshotId).toBe('b');
    expect(snapshotAt(list, Date.parse('2026-11-25T02:00:00Z'))?.snapshotId).toBe('b');
    expect(snapshotAt(list, Date.parse('2026-11-25T09:00:00Z'))?.snapshotId).toBe('c');
    expect(snapshotAt(list, Date.parse('2026-11-25T00:59:59Z'))).toBeUndefined();
  });
});

describe('mapTopics', () => {
  const topics = ['orders', 'payments', 'audit'];
  it('keeps names, selects by regex, renames and prefixes', () => {
    expect([...mapTopics(topics, {})]).toEqual([
      ['audit', 'audit'],
      ['orders', 'orders'],
      ['payments', 'payments'],
    ]);
    expect([...mapTopics(topics, { topics: 'o.*|pay.*', topicPrefix: 'restored.' })]).toEqual([
      ['orders', 'restored.orders'],
      ['payments', 'restored.payments'],
    ]);
    expect([...mapTopics(topics, { topics: 'orders', rename: ['audit:audit-copy'] })]).toEqual([
      ['audit', 'audit-copy'],
      ['orders', 'orders'],
    ]);
  });

  it('names the bad value', () => {
    expect(() => mapTopics(topics, { rename: ['orders'] })).toThrow(
      /expected --rename FROM:TO, got "orders"/,
    );
    expect(() => mapTopics(topics, { rename: ['nope:x'] })).toThrow(/the snapshot has no topic "nope"/);
    expect(() => mapTopics(topics, { rename: ['orders:bad name'] })).toThrow(/not a valid topic name/);
    expect(() => mapTopics(topics, { rename: ['orders:payments'] })).toThrow(/same topic payments/);
    expect(() => mapTopics(topics, { topics: '(' })).toThrow(/expected --topics to be a regular expression/);
    expect(() => mapTopics(topics, { topics: 'zzz' })).toThrow(/no topic of the snapshot is selected/);
    expect(() => mapTopics(topics, { rename: ['orders:__consumer_offsets'] })).toThrow(/internal topic/);
    expect(() => mapTopics(topics, { topicPrefix: 'a/b' })).toThrow(/expected --topic-prefix/);
  });

  it('gives a restore an identity that changes with what it does', () => {
    const mapping = mapTopics(topics, {});
    const id = restoreId({ snapshotId: 's1', target: 'standby', mapping, mode: 'new' });
    expect(id).toMatch(/^s1-[0-9a-f]{12}$/);
    expect(restoreId({ snapshotId: 's1', target: 'standby', mapping, mode: 'new' })).toBe(id);
    expect(restoreId({ snapshotId: 's1', target: 'primary', mapping, mode: 'new' })).not.toBe(id);
  });
});

const seg = (topic: string, partition: number, first: number, last: number): SegmentRef => ({
  key: `k/${topic}/${partition}/${first}`,
  topic,
  partition,
  firstOffset: first,
  lastOffset: last,
  firstTimestamp: 0,
  lastTimestamp: 0,
  records: last - first + 1,
  bytes: 10 * (last - first + 1),
  size: 1,
  sha256: 'x',
});

const manifest: Pick<SnapshotManifest, 'topics' | 'segments' | 'groups' | 'gaps'> = {
  topics: {
    orders: {
      partitions: 2,
      replicationFactor: 3,
      configs: { 'cleanup.policy': 'delete', 'min.insync.replicas': '2' },
    },
    logs: { partitions: 1, replicationFactor: 1, configs: { 'message.timestamp.type': 'LogAppendTime' } },
  },
  segments: [seg('orders', 0, 0, 9), seg('orders', 1, 0, 4), seg('logs', 0, 5, 9)],
  groups: { g1: { orders: { '0': 4, '1': 5 } }, g2: { other: { '0': 1 } } },
  gaps: [{ topic: 'logs', partition: 0, from: 0, to: 5 }],
};

describe('planRestore', () => {
  const mapping = new Map([
    ['logs', 'logs'],
    ['orders', 'orders'],
  ]);
  const none = new Map<string, TargetTopicState>();

  it('creates missing topics with the snapshot configs a single-broker target can take', () => {
    const plan = planRestore({ manifest, mapping, mode: 'new', targets: none, targetBrokers: 1 });
    const orders = plan.topics.find((t) => t.source === 'orders')!;
    expect(orders).toMatchObject({
      action: 'create',
      targetPartitions: 2,
      repartitioned: false,
      replicationFactor: 1,
      records: 15,
      bytes: 150,
    });
    expect(orders.configs).toMatchObject({ 'cleanup.policy': 'delete', 'min.insync.replicas': '1' });
    expect(plan.topics.find((t) => t.source === 'logs')!.configs['message.timestamp.type']).toBe(
      'CreateTime',
    );
    expect(plan.records).toBe(20);
    expect(plan.groups).toEqual(['g1']);
    expect(plan.warnings.join('\n')).toMatch(/LogAppendTime/);
    expect(plan.warnings.join('\n')).toMatch(/min.insync.replicas 2 lowered to 1/);
    expect(plan.warnings.join('\n')).toMatch(/logs-0: offsets 0-4 were deleted by retention/);
  });

  it('refuses to write into a non-empty topic in new mode, and names it', () => {
    const targets = new Map([['orders', { exists: true, partitions: 2, records: 7 }]]);
    expect(() => planRestore({ manifest, mapping, mode: 'new', targets, targetBrokers: 3 })).toThrow(
      /topic orders exists and holds 7 records: --mode new never writes into a non-empty topic/,
    );
    // A resumed restore finds its own records there.
    expect(
      planRestore({ manifest, mapping, mode: 'new', targets, targetBrokers: 3, resumed: true }).topics[1]!
        .action,
    ).toBe('use');
    expect(
      planRestore({ manifest, mapping, mode: 'append', targets, targetBrokers: 3 }).topics[1]!.action,
    ).toBe('use');
    expect(
      planRestore({ manifest, mapping, mode: 'replace', targets, targetBrokers: 3 }).topics[1]!.action,
    ).toBe('recreate');
  });

  it('re-partitions into an existing empty topic with another partition count', () => {
    const targets = new Map([['orders', { exists: true, partitions: 3, records: 0 }]]);
    const plan = planRestore({ manifest, mapping, mode: 'new', targets, targetBrokers: 3 });
    expect(plan.topics[1]).toMatchObject({
      action: 'use',
      targetPartitions: 3,
      repartitioned: true,
      configs: {},
    });
    expect(plan.warnings.join('\n')).toMatch(/orders has 3 partitions, the snapshot's orders had 2/);
  });
});

describe('group offsets on restored topics', () => {
  it('points each group at the first restored record it had not read (same partitions)', () => {
    const tracker = new PositionTracker(manifest.groups, new Map([['orders', 2]]));
    // orders-0 offsets 0..9 land at 100..109 (appended); orders-1 0..4 at 0..4.
    for (let o = 0; o <= 9; o++) tracker.written('orders', 0, o, 0, 100 + o);
    for (let o = 0; o <= 4; o++) tracker.written('orders', 1, o, 1, o);
    const offsets = groupTargetOffsets({
      positions: manifest.groups.g1!.orders!,
      topic: { source: 'orders', sourcePartitions: 2, targetPartitions: 2, repartitioned: false },
      landings: tracker.landings,
      ends: [110, 5],
    });
    // g1 had read orders-0 up to 4 (next 4) and all of orders-1 (next 5 = the end).
    expect(offsets).toEqual([
      { partition: 0, offset: 104 },
      { partition: 1, offset: 5 },
    ]);
  });

  it('never skips an unread record when re-partitioned', () => {
    const tracker = new PositionTracker({ g: { t: { '0': 2 } } }, new Map([['t', 2]]));
    // t-0: offsets 0..3 → target partitions 0,1,0,1 at offsets 0,0,1,1; t-1: 0..1 → target 0 at 2,3.
    tracker.written('t', 0, 0, 0, 0);
    tracker.written('t', 0, 1, 1, 0);
    tracker.written('t', 0, 2, 0, 1);
    tracker.written('t', 0, 3, 1, 1);
    tracker.written('t', 1, 0, 0, 2);
    tracker.written('t', 1, 1, 0, 3);
    const offsets = groupTargetOffsets({
      positions: { '0': 2 },
      topic: { source: 't', sourcePartitions: 2, targetPartitions: 2, repartitioned: true },
      landings: tracker.landings,
      ends: [4, 2],
    });
    // t-0 from offset 2: target 0 at 1, target 1 at 1; t-1 never committed: from its start (target 0 at 2).
    expect(offsets).toEqual([
      { partition: 0, offset: 1 },
      { partition: 1, offset: 1 },
    ]);
  });
});

describe('restore retention', () => {
  const snap = (configs: Record<string, string>) => ({ action: 'create' as const, snapshotConfigs: configs });

  it("takes --retention-ms, else the existing target's, else the snapshot's, else the broker default", () => {
    expect(restoredRetention(snap({}))).toEqual({
      retentionMs: BROKER_DEFAULT_RETENTION_MS,
      from: 'broker-default',
    });
    expect(restoredRetention(snap({ 'retention.ms': '60000' }))).toEqual({
      retentionMs: 60000,
      from: 'snapshot',
    });
    expect(restoredRetention(snap({ 'retention.ms': '-1' }))).toEqual({
      retentionMs: null,
      from: 'snapshot',
    });
    expect(restoredRetention({ ...snap({ 'retention.ms': '60000' }), retentionMs: 5 })).toEqual({
      retentionMs: 5,
      from: 'option',
    });
    expect(restoredRetention({ ...snap({}), retentionMs: -1 })).toEqual({
      retentionMs: null,
      from: 'option',
    });
    // An existing topic keeps its own (effective) configs; the snapshot's do not apply to it.
    expect(
      restoredRetention({
        action: 'use',
        snapshotConfigs: { 'retention.ms': '-1' },
        targetConfigs: { 'retention.ms': '120000', 'cleanup.policy': 'delete' },
      }),
    ).toEqual({ retentionMs: 120000, from: 'target' });
    expect(
      restoredRetention({
        action: 'use',
        snapshotConfigs: {},
        targetConfigs: { 'message.timestamp.type': 'LogAppendTime' },
      }),
    ).toEqual({ retentionMs: null, from: 'log-append-time' });
  });

  it('a compacted topic without delete has no time retention; compact,delete has', () => {
    expect(restoredRetention(snap({ 'cleanup.policy': 'compact', 'retention.ms': '1000' }))).toEqual({
      retentionMs: null,
      from: 'compacted',
    });
    expect(restoredRetention(snap({ 'cleanup.policy': 'compact, delete', 'retention.ms': '1000' }))).toEqual({
      retentionMs: 1000,
      from: 'snapshot',
    });
  });

  it('counts exactly the records older than the retention, and names the oldest', () => {
    const records = [500, 100, 999, 1000, 300].map((timestamp) => ({ timestamp }));
    const past = countPastRetention(records, 100, 1100, { records: 0, oldestTimestamp: null });
    expect(past).toEqual({ records: 4, oldestTimestamp: 100 });
    expect(countPastRetention(records, null, 1100, { records: 0, oldestTimestamp: null })).toEqual({
      records: 0,
      oldestTimestamp: null,
    });
    const message = pastRetentionProblem('t', { retentionMs: 100, from: 'snapshot' }, past, 1100);
    expect(message).toBe(
      '4 records of topic t are older than its retention.ms=100 (oldest at 1970-01-01T00:00:00.100Z); the broker would delete them right after the restore; pass --retention-ms <ms> to restore with a longer retention, or --restamp to give them new timestamps (the original kept in header kdr.ts); --retention-ms above 1000 keeps them all now, -1 for ever',
    );
    expect(pastRetentionProblem('t', { retentionMs: 100, from: 'option' }, past, 1100)).toContain(
      'older than --retention-ms=100',
    );
    expect(
      pastRetentionProblem(
        't',
        { retentionMs: 100, from: 'snapshot' },
        { records: 0, oldestTimestamp: null },
        1100,
      ),
    ).toBeNull();
  });

  it('--retention-ms is a whole number of milliseconds, -1 for no limit', () => {
    expect(parseRetentionMs('-1')).toBe(-1);
    expect(parseRetentionMs('0')).toBe(0);
    expect(parseRetentionMs(604800000)).toBe(604800000);
    for (const bad of ['-2', '1.5', 'week', '', '01', '99999999999999999', null])
      expect(() => parseRetentionMs(bad), String(bad)).toThrow(/expected --retention-ms as a whole number/);
  });

  it('plans --retention-ms on created topics and as a config change on existing ones', () => {
    const manifest = {
      topics: { a: { partitions: 1, configs: { 'retention.ms': '60000' }, replicationFactor: 1 } },
      segments: [],
      groups: {},
      gaps: [],
    };
    const created = planRestore({
      manifest,
      mapping: new Map([['a', 'r.a']]),
      mode: 'new',
      targets: new Map(),
      targetBrokers: 1,
      retentionMs: 86400000,
    });
    expect(created.topics[0]).toMatchObject({
      action: 'create',
      alter: {},
      retention: { retentionMs: 86400000, from: 'option' },
    });
    expect(created.topics[0]!.configs['retention.ms']).toBe('86400000');
    const used = planRestore({
      manifest,
      mapping: new Map([['a', 'r.a']]),
      mode: 'append',
      targets: new Map([
        ['r.a', { exists: true, partitions: 1, records: 3, configs: { 'retention.ms': '1000' } }],
      ]),
      targetBrokers: 1,
      retentionMs: 86400000,
    });
    expect(used.topics[0]).toMatchObject({
      action: 'use',
      configs: {},
      alter: { 'retention.ms': '86400000' },
    });
    expect(used.warnings.join('\n')).toContain(
      'topic r.a exists: its retention.ms is set to 86400000 (it was 1000)',
    );
  });
});
