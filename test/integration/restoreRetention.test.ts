import { setTimeout as sleep } from 'node:timers/promises';
import { QueryCommand } from '@aws-sdk/client-dynamodb';
import { ConfigResourceTypes } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { originOfRestored } from '../../src/core/restore.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  config,
  createTopics,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import { produce } from '../helpers/records.ts';

/**
 * Restores and retention (review 2026-12-01, finding 13): records of a snapshot that are already older than
 * the restored topic's retention.ms would be deleted by the broker right after a "successful" restore. By
 * default the restore refuses (nothing written); --retention-ms or --restamp keep them.
 *
 * The snapshot's topic `a` has retention.ms=60000 and holds 40 records a day old followed by one fresh
 * record: the fresh one keeps the source's log segment (the broker deletes a segment when its newest record
 * is past retention) for a minute, long enough to snapshot it. Topic `b` keeps everything (retention.ms=-1)
 * and holds 30 records two days old.
 */

const DAY = 86_400_000;
const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

async function snapshotted(name: string) {
  const prefix = uniqueName(name);
  const env = {
    KDR_PAIR: uniqueName(`${name}-pair`),
    KDR_TOPICS: `${prefix}-.*`,
    KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
  };
  const rt = createRuntime(loadConfig({ ...process.env, ...env }), silentLogger);
  runtimes.push(rt);
  const [a, b] = [`${prefix}-a`, `${prefix}-b`];
  await createTopics('primary', [
    { topic: a, numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '60000' }] },
    { topic: b, numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '-1' }] },
  ]);
  const now = Date.now();
  const oldestA = now - DAY - 40_000;
  await produce('primary', a, 0, [
    ...Array.from({ length: 40 }, (_, i) => ({
      key: Buffer.from(`a${i}`),
      value: Buffer.from(`old-${i}`),
      headers: [],
      timestamp: oldestA + i * 1000,
    })),
    { key: Buffer.from('fresh'), value: Buffer.from('fresh'), headers: [], timestamp: now },
  ]);
  const oldestB = now - 2 * DAY;
  await produce(
    'primary',
    b,
    0,
    Array.from({ length: 30 }, (_, i) => ({
      key: Buffer.from(`b${i}`),
      value: Buffer.from(`old-${i}`),
      headers: [],
      timestamp: oldestB + i,
    })),
  );
  const group = uniqueName(`${name}-g`);
  await commitGroupOffsets('primary', group, a, [20]);
  const snap = await runKdr(['snapshot', '--json'], { env });
  expect(snap.exitCode, snap.stderr.slice(-2000)).toBe(0);
  const snapshotId = JSON.parse(snap.stdout).snapshotId as string;
  return { env, a, b, group, snapshotId, producedAt: now, oldestA, oldestB };
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

async function retentionOf(topic: string): Promise<string | undefined> {
  return withAdmin('standby', async (admin) => {
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
    });
    return resources[0]?.configEntries.find((e) => e.configName === 'retention.ms')?.configValue;
  });
}

describe('restore and retention', () => {
  it('refuses records already past the target retention with their exact count, and writes nothing', async () => {
    const s = await snapshotted('rret');
    // An existing, empty standby topic that keeps records for two minutes.
    const short = `short.${s.b}`;
    await createTopics('standby', [
      { topic: short, numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '120000' }] },
    ]);
    const topicsBefore = (await withAdmin('standby', (admin) => admin.listTopics())).sort();
    const base = ['restore', '--snapshot', s.snapshotId, '--target', 'standby'];

    // The plan says it: a is created with the snapshot's retention.ms=60000, b keeps everything.
    const dry = await runKdr([...base, '--topic-prefix', 'x.', '--dry-run', '--json'], { env: s.env });
    expect(dry.exitCode, dry.stderr.slice(-2000)).toBe(0);
    const report = JSON.parse(dry.stdout);
    const byTarget = Object.fromEntries(
      report.topics.map((t: { target: string; pastRetention: unknown }) => [t.target, t.pastRetention]),
    );
    expect(byTarget[`x.${s.a}`]).toMatchObject({
      records: 40,
      retentionMs: 60000,
      retentionFrom: 'snapshot',
      oldestTimestamp: s.oldestA,
    });
    expect(byTarget[`x.${s.b}`]).toMatchObject({ records: 0, retentionMs: null });
    expect(report.warnings.join('\n')).toContain(
      `40 records of topic x.${s.a} are older than its retention.ms=60000 (oldest at ${new Date(s.oldestA).toISOString()})`,
    );

    const cases: [string[], string][] = [
      [
        ['--topic-prefix', 'x.'],
        `40 records of topic x.${s.a} are older than its retention.ms=60000 (oldest at ${new Date(s.oldestA).toISOString()}); the broker would delete them right after the restore; pass --retention-ms <ms> to restore with a longer retention, or --restamp to give them new timestamps (the original kept in header kdr.ts)`,
      ],
      [
        ['--topics', s.b, '--rename', `${s.b}:${short}`],
        `30 records of topic ${short} are older than its retention.ms=120000 (oldest at ${new Date(s.oldestB).toISOString()})`,
      ],
      [
        ['--topic-prefix', 'x.', '--retention-ms', '3600000'],
        `40 records of topic x.${s.a} are older than --retention-ms=3600000`,
      ],
      [['--topic-prefix', 'x.', '--retention-ms', '3600000'], `30 records of topic x.${s.b}`],
      [
        ['--topic-prefix', 'x.', '--retention-ms', 'week'],
        'expected --retention-ms as a whole number of milliseconds (-1: no limit) up to 9007199254740991, got "week"',
      ],
      [['--topic-prefix', 'x.', '--retention-ms', '-2'], 'got "-2"'],
    ];
    for (const [args, message] of cases) {
      const result = await runKdr([...base, ...args], { env: s.env });
      expect(result.exitCode, `${args.join(' ')}: ${result.stderr.slice(-2000)}`).toBe(2);
      expect(result.stderr, args.join(' ')).toContain(message);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
    // Nothing was written: no topic, no record, no restore left behind to block the next run.
    expect((await withAdmin('standby', (admin) => admin.listTopics())).sort()).toEqual(topicsBefore);
    expect(await readWithKcat('standby', short)).toHaveLength(0);
    expect(await restoreItems(s.env.KDR_PAIR)).toBe(0);
    // ...so the same restore with a long enough retention runs at once.
    const ok = await runKdr([...base, '--topic-prefix', 'x.', '--retention-ms', String(7 * DAY), '--json'], {
      env: s.env,
    });
    expect(ok.exitCode, ok.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ records: 71 });
  });

  it('counts the same records past retention in segments written before they recorded their oldest timestamp', async () => {
    const s = await snapshotted('rretold');
    const rt = runtimes.at(-1)!;
    const key = `${s.env.KDR_SNAPSHOT_PREFIX}/manifests/${s.snapshotId}.json`;
    const manifest = JSON.parse((await rt.objectStore.get(key)).toString());
    expect(manifest.segments.map((seg: { minTimestamp?: number }) => seg.minTimestamp)).toEqual([
      s.oldestA,
      s.oldestB,
    ]);
    const retention = ['--retention-ms', '3600000', '--dry-run', '--json'];
    const pastRetention = async () => {
      const dry = await runKdr(
        [
          ...['restore', '--snapshot', s.snapshotId, '--target', 'standby', '--topic-prefix', 'x.'],
          ...retention,
        ],
        { env: s.env },
      );
      expect(dry.exitCode, dry.stderr.slice(-2000)).toBe(0);
      // asOf is each run's own clock
      return JSON.parse(dry.stdout).topics.map(
        ({ pastRetention: { asOf: _, ...counted } }: { pastRetention: { asOf: string; records: number } }) =>
          counted,
      );
    };
    const withMin = await pastRetention();
    expect(withMin.map((p: { records: number }) => p.records)).toEqual([40, 30]);
    // The same snapshot as an older kdr wrote it: no minTimestamp, so every segment is read to count.
    for (const seg of manifest.segments) delete seg.minTimestamp;
    await rt.objectStore.put(key, JSON.stringify(manifest));
    expect(await pastRetention()).toEqual(withMin);
  });

  it('with --retention-ms or --restamp every record is still there a minute later', async () => {
    const s = await snapshotted('rkeep');
    const stamped = `stamp.${s.b}`;
    await createTopics('standby', [
      { topic: stamped, numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '120000' }] },
    ]);
    const base = ['restore', '--snapshot', s.snapshotId, '--target', 'standby', '--json'];
    const kept = await runKdr(
      [...base, '--topics', s.a, '--topic-prefix', 'keep.', '--retention-ms', String(7 * DAY)],
      {
        env: s.env,
      },
    );
    expect(kept.exitCode, kept.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(kept.stdout)).toMatchObject({ records: 41 });
    expect(await retentionOf(`keep.${s.a}`)).toBe(String(7 * DAY));

    const restampedAt = Date.now();
    const restamped = await runKdr([...base, '--topics', s.b, '--rename', `${s.b}:${stamped}`, '--restamp'], {
      env: s.env,
    });
    expect(restamped.exitCode, restamped.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(restamped.stdout)).toMatchObject({ records: 30 });
    const checkStamped = async () => {
      const records = await readWithKcat('standby', stamped);
      expect(records).toHaveLength(30);
      records.forEach((r, i) => {
        expect(r.timestamp).toBeGreaterThanOrEqual(restampedAt - 1000);
        const ts = r.headers.find(([k]) => k === 'kdr.ts')?.[1]?.toString();
        expect(ts, `record ${i}`).toBe(String(s.oldestB + i));
        expect(r.value?.toString()).toBe(`old-${i}`);
      });
    };
    await checkStamped();

    // The source topic `a` shows that the broker does delete at this retention: wait until its fresh record
    // is past 60 s and the broker's retention check (every 5 s in the lab) has run twice.
    const wait = s.producedAt + 60_000 + 11_000 - Date.now();
    if (wait > 0) await sleep(wait);
    expect(await readWithKcat('primary', s.a)).toHaveLength(0);
    const restoredA = await readWithKcat('standby', `keep.${s.a}`);
    expect(restoredA.map((r) => r.value?.toString())).toEqual([
      ...Array.from({ length: 40 }, (_, i) => `old-${i}`),
      'fresh',
    ]);
    expect(restoredA.map((r) => r.timestamp).slice(0, 40)).toEqual(
      Array.from({ length: 40 }, (_, i) => s.oldestA + i * 1000),
    );
    await checkStamped();
    // The group resumes at the record it had committed (snapshot offset 20).
    const offsets = await withAdmin('standby', (admin) =>
      admin.fetchOffsets({ groupId: s.group, topics: [`keep.${s.a}`] }),
    );
    const at = Number(offsets[0]!.partitions[0]!.offset);
    const next = restoredA.find((r) => r.offset >= at)!;
    expect(originOfRestored(next.headers.map(([key, value]) => ({ key, value })))?.offset).toBe(20);
  });
});
