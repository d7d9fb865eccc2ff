import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueryCommand } from '@aws-sdk/client-dynamodb';
import { execa } from 'execa';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import { DynamoDBRestoreStore } from '../../src/adapters/dynamodb/restoreStore.ts';
import { loadConfig } from '../../src/config.ts';
import { murmur2, originOfRestored, RESTORE_HEADER, restoreId } from '../../src/core/restore.ts';
import type { SnapshotManifest } from '../../src/core/snapshot.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import type { RestoreProgress } from '../../src/services/restore.ts';
import { KDR_BIN, runKdr } from '../helpers/cli.ts';
import {
  type ClusterName,
  commitGroupOffsets,
  config,
  createTopics,
  eventually,
  KAFKA_TOOLS,
  type KcatRecord,
  kafkaFor,
  kafkaTool,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import { canonical, edgeCaseRecord, prng, produce } from '../helpers/records.ts';

/**
 * Restores against the lab: snapshots of real topics, restored into real clusters, read back with kcat and
 * Kafka's own consumer-groups tool. Each test has its own pair, topics, groups and snapshot prefix.
 */

const runtimes: Runtime[] = [];
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

function setup(name: string, extra: Record<string, string> = {}) {
  const prefix = uniqueName(name);
  const env = {
    KDR_PAIR: uniqueName(`${name}-pair`),
    KDR_TOPICS: `${prefix}-.*`,
    KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
    ...extra,
  };
  const rt = createRuntime(loadConfig({ ...process.env, ...env }), silentLogger);
  runtimes.push(rt);
  return { prefix, env, rt, topic: (suffix: string) => `${prefix}-${suffix}` };
}

/** Edge-case records (null keys and values, binary data, headers with nulls and duplicates) per partition. */
async function load(
  topic: string,
  partitions: number,
  perPartition: number,
  seed: number,
  cluster: ClusterName = 'primary',
) {
  const random = prng(seed);
  for (let p = 0; p < partitions; p++) {
    await produce(
      cluster,
      topic,
      p,
      Array.from({ length: perPartition }, (_, i) =>
        edgeCaseRecord(p * perPartition + i, random, Date.now()),
      ),
    );
  }
}

async function snapshot(env: Record<string, string>): Promise<string> {
  const result = await runKdr(['snapshot', '--json'], { env });
  expect(result.exitCode, result.stderr.slice(-2000)).toBe(0);
  return JSON.parse(result.stdout).snapshotId as string;
}

/**
 * The edge-case records carry timestamps at the epoch and before 2001, far past any retention: these
 * restores keep them with --retention-ms -1 (restoreRetention.test.ts shows what happens without).
 */
const KEEP_FOREVER = ['--retention-ms', '-1'];

async function restore(env: Record<string, string>, args: string[], expectedExit = 0) {
  const result = await runKdr(['restore', ...args, ...KEEP_FOREVER, '--json'], { env });
  expect(result.exitCode, result.stderr.slice(-2000)).toBe(expectedExit);
  return { ...result, report: expectedExit === 0 ? JSON.parse(result.stdout) : undefined };
}

const withoutRestoreHeader = (r: KcatRecord) => ({
  ...r,
  headers: r.headers.filter(([k]) => k !== RESTORE_HEADER),
});
const originOf = (r: KcatRecord) => originOfRestored(r.headers.map(([key, value]) => ({ key, value })));

/** The records of a topic per partition, as kcat reads them (read_committed). */
async function partitions(cluster: ClusterName, topic: string): Promise<Map<number, KcatRecord[]>> {
  const out = new Map<number, KcatRecord[]>();
  for (const r of await readWithKcat(cluster, topic))
    out.set(r.partition, [...(out.get(r.partition) ?? []), r]);
  return out;
}

/** A restored partition holds exactly the snapshot's records of a partition, in order, each once. */
function expectSameRecords(restored: KcatRecord[], original: KcatRecord[], what: string) {
  expect(restored.length, what).toBe(original.length);
  restored.forEach((r, i) => {
    const o = original[i]!;
    expect(canonical(withoutRestoreHeader(r)).equals(canonical(o)), `${what} record ${i}`).toBe(true);
    expect(originOf(r)?.offset, `${what} record ${i}`).toBe(o.offset);
  });
}

/** Committed offsets of a group, read with Kafka's own tool: topic → partition → offset. */
async function groupOffsets(cluster: ClusterName, group: string): Promise<Map<string, Map<number, number>>> {
  const described = await kafkaTool(KAFKA_TOOLS.consumerGroups, [
    '--bootstrap-server',
    config[cluster].brokers[0]!,
    '--describe',
    '--group',
    group,
  ]);
  const out = new Map<string, Map<number, number>>();
  for (const line of described.stdout.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[0] !== group || !/^\d+$/.test(cols[2] ?? '') || !/^\d+$/.test(cols[3] ?? '')) continue;
    const byPartition = out.get(cols[1]!) ?? new Map<number, number>();
    byPartition.set(Number(cols[2]), Number(cols[3]));
    out.set(cols[1]!, byPartition);
  }
  return out;
}

async function restoreItems(pair: string): Promise<number> {
  const result = await runtimes[0]!.aws.dynamodb.send(
    new QueryCommand({
      TableName: config.stateTable,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': { S: `pair#${pair}#restores` } },
    }),
  );
  return result.Count ?? 0;
}

async function endOffsets(cluster: ClusterName, topic: string): Promise<number[]> {
  return withAdmin(cluster, async (admin) =>
    (await admin.fetchTopicOffsets(topic))
      .sort((a, b) => a.partition - b.partition)
      .map((o) => Number(o.high)),
  );
}

/** A loaded primary topic, a group's committed offsets on it, its records, and a snapshot of it all. */
async function snapshotted(name: string, partitionCount: number, perPartition: number, committed: number[]) {
  const s = setup(name);
  const topic = s.topic('t');
  await createTopics('primary', [{ topic, numPartitions: partitionCount }]);
  await load(topic, partitionCount, perPartition, perPartition + partitionCount);
  const group = uniqueName(`${name}-g`);
  await commitGroupOffsets('primary', group, topic, committed);
  const atCut = await partitions('primary', topic);
  return { s, topic, group, atCut, snapshotId: await snapshot(s.env) };
}

describe('restore', () => {
  it('brings a damaged, then a deleted topic back exactly, with every group at the same record', async () => {
    // Nothing read of partition 0, part of 1, all of 2.
    const committed = [0, 137, 400];
    const { s, topic, group, atCut, snapshotId } = await snapshotted('rdamage', 3, 400, committed);

    const checkRestored = async () => {
      const restored = await partitions('primary', topic);
      for (let p = 0; p < 3; p++) expectSameRecords(restored.get(p) ?? [], atCut.get(p)!, `${topic}-${p}`);
      // The group resumes at the same logical record: the one whose snapshot offset it had committed.
      const offsets = (await groupOffsets('primary', group)).get(topic)!;
      const ends = await endOffsets('primary', topic);
      for (let p = 0; p < 3; p++) {
        const at = offsets.get(p)!;
        const next = restored.get(p)!.find((r) => r.offset >= at);
        if (committed[p] === 400) expect(at, `partition ${p}`).toBe(ends[p]);
        else expect(originOf(next!)?.offset, `partition ${p}`).toBe(committed[p]);
      }
    };

    // Damage: garbage appended to every partition.
    await produce(
      'primary',
      topic,
      1,
      Array.from({ length: 50 }, () => ({
        key: null,
        value: Buffer.from('garbage'),
        headers: [],
        timestamp: 1,
      })),
    );
    const replaced = await restore(s.env, [
      '--snapshot',
      snapshotId,
      '--target',
      'primary',
      '--mode',
      'replace',
      '--yes',
    ]);
    expect(replaced.report).toMatchObject({ snapshotId, mode: 'replace', records: 1200 });
    expect(replaced.report.safetySnapshotId).toMatch(/^\d{8}T\d{6}Z-/);
    expect(replaced.report.groups[group]).toMatchObject({ status: 'committed' });
    await checkRestored();
    // The safety snapshot holds what was replaced, garbage included.
    const safety = JSON.parse(
      (
        await s.rt.objectStore.get(`test/${s.prefix}/manifests/${replaced.report.safetySnapshotId}.json`)
      ).toString(),
    ) as SnapshotManifest;
    expect(safety.segments.reduce((n, seg) => n + seg.records, 0)).toBe(1250);

    // Running the same restore again changes nothing: it is complete.
    const again = await restore(s.env, [
      '--snapshot',
      snapshotId,
      '--target',
      'primary',
      '--mode',
      'replace',
      '--yes',
    ]);
    expect(again.report.restoreId).toBe(replaced.report.restoreId);
    expect((await readWithKcat('primary', topic)).length).toBe(1200);

    // Damage: the topic is deleted; the default mode (new) creates it again.
    await withAdmin('primary', (admin) => admin.deleteTopics({ topics: [topic] }));
    const recreated = await restore(s.env, ['--snapshot', snapshotId, '--target', 'primary']);
    expect(recreated.report.topics[0]).toMatchObject({ target: topic, action: 'create', records: 1200 });
    await checkRestored();
  });

  it('--mode append writes after what is there; replace --no-safety-snapshot takes none', async () => {
    const { s, topic, group, atCut, snapshotId } = await snapshotted('rappend', 2, 150, [40, 150]);
    // The standby's copy already holds 25 records per partition of its own.
    const target = `old.${topic}`;
    await createTopics('standby', [{ topic: target, numPartitions: 2 }]);
    await load(target, 2, 25, 5, 'standby');
    const before = await partitions('standby', target);
    const intoTarget = ['--snapshot', snapshotId, '--target', 'standby', '--rename', `${topic}:${target}`];

    const { report } = await restore(s.env, [...intoTarget, '--mode', 'append']);
    expect(report.topics[0]).toMatchObject({ target, action: 'use', records: 300 });
    const after = await partitions('standby', target);
    const ends = await endOffsets('standby', target);
    const offsets = (await groupOffsets('standby', group)).get(target)!;
    for (let p = 0; p < 2; p++) {
      const records = after.get(p)!;
      // What was there stays first and untouched; the snapshot's records follow, each once, in order.
      expect(records.slice(0, 25).map((r) => canonical(r))).toEqual(before.get(p)!.map((r) => canonical(r)));
      expectSameRecords(records.slice(25), atCut.get(p)!, `${target}-${p}`);
      const at = offsets.get(p)!;
      if (p === 1) expect(at).toBe(ends[p]);
      else expect(originOf(records.find((r) => r.offset >= at)!)?.offset).toBe(40);
    }

    const replaced = await restore(s.env, [
      ...intoTarget,
      '--mode',
      'replace',
      '--yes',
      '--no-safety-snapshot',
    ]);
    expect(replaced.report).toMatchObject({ mode: 'replace', safetySnapshotId: null, records: 300 });
    const replacedRecords = await partitions('standby', target);
    for (let p = 0; p < 2; p++) expectSameRecords(replacedRecords.get(p)!, atCut.get(p)!, `${target}-${p}`);
  });

  it('restores into the other cluster under a prefix, re-partitioning a topic by key', async () => {
    const s = setup('rprefix');
    const [a, b] = [s.topic('a'), s.topic('b')];
    await createTopics('primary', [
      { topic: a, numPartitions: 3 },
      { topic: b, numPartitions: 2 },
    ]);
    await load(a, 3, 200, 2);
    await load(b, 2, 300, 3);
    const group = uniqueName('rprefix-g');
    await commitGroupOffsets('primary', group, a, [10, 20, 30]);
    await commitGroupOffsets('primary', group, b, [100, 250]);
    const atCut = { a: await partitions('primary', a), b: await partitions('primary', b) };
    const snapshotId = await snapshot(s.env);
    // On the standby, b exists already, empty, with 4 partitions instead of 2.
    const prefix = 'copy.';
    await createTopics('standby', [{ topic: `${prefix}${b}`, numPartitions: 4 }]);

    const dry = await restore(s.env, [
      '--snapshot',
      snapshotId,
      '--target',
      'standby',
      '--topic-prefix',
      prefix,
      '--dry-run',
    ]);
    expect(dry.report).toMatchObject({ dryRun: true, records: 1200 });
    expect(dry.report.topics.map((t: { target: string; action: string }) => [t.target, t.action])).toEqual([
      [`${prefix}${a}`, 'create'],
      [`${prefix}${b}`, 'use'],
    ]);
    expect(await withAdmin('standby', (admin) => admin.listTopics())).not.toContain(`${prefix}${a}`);

    const { report } = await restore(s.env, [
      '--snapshot',
      snapshotId,
      '--target',
      'standby',
      '--topic-prefix',
      prefix,
    ]);
    expect(report.topics.find((t: { target: string }) => t.target === `${prefix}${b}`)).toMatchObject({
      partitions: 4,
      repartitioned: true,
    });
    expect(report.warnings.join('\n')).toContain('re-partitioned by key');

    const restoredA = await partitions('standby', `${prefix}${a}`);
    for (let p = 0; p < 3; p++) expectSameRecords(restoredA.get(p)!, atCut.a.get(p)!, `a-${p}`);
    const offsets = await groupOffsets('standby', group);
    for (const [p, c] of [10, 20, 30].entries()) {
      const next = restoredA.get(p)!.find((r) => r.offset >= offsets.get(`${prefix}${a}`)!.get(p)!);
      expect(originOf(next!)?.offset).toBe(c);
    }

    // b: every record exactly once, in the partition Kafka's murmur2 gives its key, per-key order kept.
    const restoredB = await readWithKcat('standby', `${prefix}${b}`);
    const origins = restoredB.map((r) => `${originOf(r)!.partition}/${originOf(r)!.offset}`);
    expect(new Set(origins).size).toBe(600);
    expect(origins.sort()).toEqual(
      [...atCut.b.entries()].flatMap(([p, records]) => records.map((r) => `${p}/${r.offset}`)).sort(),
    );
    const lastByKey = new Map<string, number>();
    for (const r of restoredB) {
      const origin = originOf(r)!;
      const expected = r.key === null ? origin.partition % 4 : (murmur2(r.key) & 0x7fffffff) % 4;
      expect(r.partition).toBe(expected);
      if (r.key !== null) {
        const k = `${origin.partition}:${r.key.toString('hex')}`;
        expect(origin.offset).toBeGreaterThan(lastByKey.get(k) ?? -1);
        lastByKey.set(k, origin.offset);
      }
    }
    // An independent client agrees on placement: librdkafka's Java-compatible murmur2 partitioner.
    const scratch = uniqueName('rprefix-murmur');
    await createTopics('standby', [{ topic: scratch, numPartitions: 4 }]);
    const textKeys = [
      ...new Set(restoredB.filter((r) => r.key?.toString().startsWith('key-')).map((r) => r.key!.toString())),
    ];
    await execa(
      'kcat',
      ['-b', config.standby.brokers[0]!, '-P', '-t', scratch, '-K', ':', '-X', 'topic.partitioner=murmur2'],
      {
        input: textKeys.map((k) => `${k}:x`).join('\n'),
      },
    );
    const placed = await readWithKcat('standby', scratch);
    expect(placed.length).toBe(textKeys.length);
    for (const r of placed) {
      const ours = restoredB.find((x) => x.key?.toString() === r.key!.toString())!;
      expect(ours.partition, r.key!.toString()).toBe(r.partition);
    }
    // No unread record is skipped: everything at or after a group position is at or after the group's
    // restored offset in its target partition.
    const bOffsets = offsets.get(`${prefix}${b}`)!;
    const positions = [100, 250];
    for (const r of restoredB) {
      const origin = originOf(r)!;
      if (origin.offset >= positions[origin.partition]!)
        expect(r.offset, `${origin.partition}/${origin.offset}`).toBeGreaterThanOrEqual(
          bOffsets.get(r.partition)!,
        );
    }
  });

  it('picks the newest snapshot cut at or before --at', async () => {
    const s = setup('rat');
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await load(topic, 1, 100, 4);
    const first = await snapshot(s.env);
    const between = new Date().toISOString();
    await sleep(20);
    await load(topic, 1, 100, 5);
    await snapshot(s.env);
    const { report } = await restore(s.env, [
      '--at',
      between,
      '--target',
      'standby',
      '--topic-prefix',
      'at.',
    ]);
    expect(report.snapshotId).toBe(first);
    expect((await readWithKcat('standby', `at.${topic}`)).length).toBe(100);
  });

  it('resumes after being killed at random points: no duplicate, no loss', { timeout: 600_000 }, async () => {
    const s = setup('rkill', {
      KDR_SNAPSHOT_SEGMENT_BYTES: '30000',
      KDR_MIRROR_MAX_TRANSACTION_RECORDS: '10',
    });
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 3 }]);
    await load(topic, 3, 1000, 6);
    const group = uniqueName('rkill-g');
    await commitGroupOffsets('primary', group, topic, [500, 0, 999]);
    const atCut = await partitions('primary', topic);
    const snapshotId = await snapshot(s.env);
    const args = [
      'restore',
      '--snapshot',
      snapshotId,
      '--target',
      'standby',
      '--topic-prefix',
      'k.',
      ...KEEP_FOREVER,
    ];
    const id = restoreId({
      snapshotId,
      target: 'standby',
      mapping: new Map([[topic, `k.${topic}`]]),
      mode: 'new',
    });
    const store = new DynamoDBRestoreStore<RestoreProgress>(
      s.rt.aws.dynamodb,
      config.stateTable,
      s.env.KDR_PAIR,
    );
    const seed = Number(process.env.KDR_TEST_SEED ?? Date.now() % 100_000);
    const random = prng(seed);
    let killed = 0;
    let lastRecords = 0;
    for (let round = 0; round < 10 && killed < 6; round++) {
      const child = spawn(process.execPath, [KDR_BIN, ...args], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...s.env },
        stdio: 'ignore',
      });
      children.add(child);
      let exited = false;
      const exit = new Promise<void>((resolve) =>
        child.once('exit', () => {
          exited = true;
          resolve();
        }),
      );
      // Kill while it writes: once this run has saved progress, at a random moment after.
      await eventually(
        `restore run ${round} wrote something (seed ${seed})`,
        async () => exited || ((await store.get(id))?.records ?? 0) > lastRecords,
        120_000,
      );
      await sleep(random() * 150);
      if (!exited) {
        child.kill('SIGKILL');
        killed++;
      }
      await exit;
      children.delete(child);
      lastRecords = (await store.get(id))?.records ?? 0;
    }
    expect(killed, `seed ${seed}`).toBeGreaterThanOrEqual(5);
    const { report } = await restore(s.env, args.slice(1, -2));
    expect(report.records).toBe(3000);
    const restored = await partitions('standby', `k.${topic}`);
    for (let p = 0; p < 3; p++) expectSameRecords(restored.get(p)!, atCut.get(p)!, `k.${topic}-${p}`);
    const offsets = (await groupOffsets('standby', group)).get(`k.${topic}`)!;
    expect(originOf(restored.get(0)!.find((r) => r.offset >= offsets.get(0)!)!)?.offset).toBe(500);
    expect(originOf(restored.get(1)!.find((r) => r.offset >= offsets.get(1)!)!)?.offset).toBe(0);
    expect(originOf(restored.get(2)!.find((r) => r.offset >= offsets.get(2)!)!)?.offset).toBe(999);
  });

  it('commits nothing for a group with active members on the target, and commits it once they stop', async () => {
    const s = setup('ractive');
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await load(topic, 1, 50, 9);
    const [busy, idle] = [uniqueName('ractive-busy'), uniqueName('ractive-idle')];
    await commitGroupOffsets('primary', busy, topic, [20]);
    await commitGroupOffsets('primary', idle, topic, [30]);
    const snapshotId = await snapshot(s.env);
    // The busy group has a running consumer on the standby (on another topic).
    const other = uniqueName('ractive-other');
    await createTopics('standby', [{ topic: other, numPartitions: 1 }]);
    const consumer = kafkaFor('standby').consumer({ groupId: busy });
    await consumer.connect();
    await consumer.subscribe({ topics: [other] });
    let joined = false;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      joined = true;
    });
    await consumer.run({ eachMessage: async () => {} });
    await eventually('the busy group has a member on the standby', () => joined, 60_000);
    const args = ['--snapshot', snapshotId, '--target', 'standby', '--topic-prefix', 'act.'];
    try {
      const first = await restore(s.env, args, 5);
      expect(first.stderr).toContain(`1 group(s) were not restored: ${busy}`);
      const report = JSON.parse(first.stdout);
      expect(report.groups[busy]).toMatchObject({ status: 'skipped' });
      expect(report.groups[busy].error).toContain(`group ${busy} has active members on standby`);
      expect(report.groups[idle]).toMatchObject({ status: 'committed' });
      expect((await groupOffsets('standby', busy)).get(`act.${topic}`)).toBeUndefined();
    } finally {
      await consumer.disconnect();
    }
    const second = await restore(s.env, args);
    expect(second.report.groups[busy]).toMatchObject({ status: 'committed' });
    expect((await readWithKcat('standby', `act.${topic}`)).length).toBe(50);
    const restored = await partitions('standby', `act.${topic}`);
    const at = (await groupOffsets('standby', busy)).get(`act.${topic}`)!.get(0)!;
    expect(originOf(restored.get(0)!.find((r) => r.offset >= at)!)?.offset).toBe(20);
  });

  it('rejects bad input with a clear error and writes nothing', async () => {
    const s = setup('rbad', { KDR_SNAPSHOT_SEGMENT_BYTES: '20000' });
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await load(topic, 1, 300, 7);
    const snapshotId = await snapshot(s.env);
    // A non-empty topic where the restore would write in --mode new.
    const occupied = `occupied.${topic}`;
    await createTopics('standby', [{ topic: occupied, numPartitions: 1 }]);
    await load(occupied, 1, 5, 8, 'standby');
    const topicsBefore = (await withAdmin('standby', (admin) => admin.listTopics())).sort();
    const endsBefore = await endOffsets('standby', occupied);

    const cases: [string[], number, string][] = [
      [
        ['--snapshot', snapshotId, '--target', 'standby', '--topic-prefix', 'occupied.'],
        2,
        `topic ${occupied} exists and holds 5 records: --mode new never writes into a non-empty topic`,
      ],
      [
        ['--snapshot', '20200101T000000Z-dead', '--target', 'standby'],
        6,
        'snapshot 20200101T000000Z-dead does not exist',
      ],
      [
        ['--snapshot', 'latest', '--target', 'standby'],
        2,
        'expected a snapshot id such as 20261124T193000Z-3fa9',
      ],
      [
        ['--snapshot', snapshotId, '--target', 'standby', '--rename', 'nocolon'],
        2,
        'expected --rename FROM:TO, got "nocolon"',
      ],
      [
        ['--snapshot', snapshotId, '--target', 'standby', '--rename', 'ghost:x'],
        2,
        'the snapshot has no topic "ghost"',
      ],
      [
        ['--snapshot', snapshotId, '--target', 'standby', '--mode', 'replace'],
        2,
        '--mode replace deletes and recreates the target topics: add --yes',
      ],
      [
        ['--snapshot', snapshotId, '--target', 'standby', '--mode', 'merge'],
        2,
        'Allowed choices are new, append, replace',
      ],
      [
        ['--snapshot', snapshotId, '--target', 'nowhere'],
        2,
        'expected --target primary, standby or a comma-separated list of host:port brokers, got "nowhere"',
      ],
      [
        ['--at', '2000-01-01T00:00:00Z', '--target', 'standby'],
        6,
        'no snapshot of primary was cut at or before 2000-01-01T00:00:00.000Z',
      ],
      [
        ['--at', 'yesterday', '--target', 'standby'],
        2,
        'expected an ISO time such as 2026-11-25T02:00:00Z, got "yesterday"',
      ],
      [['--target', 'standby'], 2, 'expected exactly one of snapshotId (--snapshot) and at (--at)'],
    ];
    for (const [args, code, message] of cases) {
      const result = await runKdr(['restore', ...args], { env: s.env });
      expect(result.exitCode, `${args.join(' ')}: ${result.stderr}`).toBe(code);
      expect(result.stderr, args.join(' ')).toContain(message);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    // A corrupt segment is found before anything is written, and named.
    const manifestKey = `test/${s.prefix}/manifests/${snapshotId}.json`;
    const m = JSON.parse((await s.rt.objectStore.get(manifestKey)).toString()) as SnapshotManifest;
    expect(m.segments.length).toBeGreaterThan(1);
    const corrupt = m.segments.at(-1)!.key;
    await s.rt.objectStore.put(corrupt, Buffer.from('not a segment'));
    const bad = await runKdr(
      ['restore', '--snapshot', snapshotId, '--target', 'standby', '--topic-prefix', 'corrupt.'],
      {
        env: s.env,
      },
    );
    expect(bad.exitCode).toBe(7);
    expect(bad.stderr).toContain(`${corrupt}: segment checksum mismatch`);
    expect(bad.stderr).toContain('nothing was written');

    expect((await withAdmin('standby', (admin) => admin.listTopics())).sort()).toEqual(topicsBefore);
    expect(await endOffsets('standby', occupied)).toEqual(endsBefore);
    expect(await restoreItems(s.env.KDR_PAIR)).toBe(0);
  });
});
