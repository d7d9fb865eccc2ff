import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import { loadConfig } from '../../src/config.ts';
import type { SourceRecord } from '../../src/core/records.ts';
import { decodeSegment } from '../../src/core/segment.ts';
import type { SnapshotManifest } from '../../src/core/snapshot.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { KDR_BIN, runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, kafkaFor, uniqueName } from '../helpers/lab.ts';
import { canonical, edgeCaseRecord, prng, produce } from '../helpers/records.ts';

/**
 * Snapshots against the lab (Kafka + moto). Each test has its own pair, topics and key prefix, so its
 * snapshots, parents and prunes are its own.
 */

const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

function setup(name: string, extra: Record<string, string> = {}) {
  const prefix = uniqueName(name);
  const env = {
    KDR_PAIR: uniqueName(`${name}-pair`),
    KDR_TOPICS: `${prefix}-.*`,
    KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
    KDR_SNAPSHOT_LEASE_MS: '2000',
    ...extra,
  };
  const rt = createRuntime(loadConfig({ ...process.env, ...env }), silentLogger);
  runtimes.push(rt);
  return { prefix, env, rt, topic: (suffix: string) => `${prefix}-${suffix}` };
}

async function manifest(rt: Runtime, id: string): Promise<SnapshotManifest> {
  return JSON.parse(
    (await rt.objectStore.get(`${rt.config.snapshot.prefix}/manifests/${id}.json`)).toString(),
  );
}

/** Every record a manifest's segments hold, per "topic-partition". */
async function restoreView(rt: Runtime, m: SnapshotManifest): Promise<Map<string, SourceRecord[]>> {
  const out = new Map<string, SourceRecord[]>();
  for (const s of m.segments) {
    const key = `${s.topic}-${s.partition}`;
    out.set(key, [...(out.get(key) ?? []), ...decodeSegment(await rt.objectStore.get(s.key), s.sha256)]);
  }
  return out;
}

/** The committed records on the cluster below the cut, per "topic-partition". */
async function clusterView(rt: Runtime, m: SnapshotManifest): Promise<Map<string, SourceRecord[]>> {
  const out = new Map<string, SourceRecord[]>();
  for (const [topic, partitions] of Object.entries(m.cut)) {
    for (const [partition, cut] of Object.entries(partitions)) {
      const tp = { topic, partition: Number(partition) };
      const [o] = await rt.sourceReader.offsets(topic, [tp.partition]);
      const records: SourceRecord[] = [];
      for await (const batch of rt.sourceReader.readRange(tp, o!.logStart, cut.end)) records.push(...batch);
      out.set(`${topic}-${partition}`, records);
    }
  }
  return out;
}

function digest(view: Map<string, SourceRecord[]>): string {
  const hash = createHash('sha256');
  for (const key of [...view.keys()].sort()) {
    hash.update(key);
    for (const r of view.get(key)!) hash.update(`${r.offset}`).update(canonical(r));
  }
  return hash.digest('hex');
}

async function snapshot(env: Record<string, string>) {
  const result = await runKdr(['snapshot', '--json'], { env });
  expect(result.exitCode, result.stderr.slice(-2000)).toBe(0);
  return JSON.parse(result.stdout) as {
    snapshotId: string;
    parent: string | null;
    records: number;
    segments: number;
    gaps: unknown[];
    clamped: unknown[];
  };
}

describe('snapshots', () => {
  it('hold exactly the records up to the cut, incrementally, for every kind of topic', async () => {
    const s = setup('snap');
    const random = prng(11);
    const now = Date.now();
    const keep = [{ name: 'retention.ms', value: '-1' }];
    await createTopics('primary', [
      { topic: s.topic('plain'), numPartitions: 2, configEntries: keep },
      {
        topic: s.topic('compacted'),
        numPartitions: 1,
        configEntries: [...keep, { name: 'cleanup.policy', value: 'compact' }],
      },
      { topic: s.topic('txn'), numPartitions: 1 },
    ]);
    let n = 0;
    const batch = (count: number) => Array.from({ length: count }, () => edgeCaseRecord(n++, random, now));
    await produce('primary', s.topic('plain'), 0, batch(700), { compression: 2 });
    await produce('primary', s.topic('plain'), 1, batch(300));
    await produce(
      'primary',
      s.topic('compacted'),
      0,
      batch(400).map((r, i) => ({ ...r, key: Buffer.from(`k${i % 30}`) })),
    );
    const txn = kafkaFor('primary').producer({
      transactionalId: uniqueName('snap-txn'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await txn.connect();
    for (let t = 0; t < 12; t++) {
      const tx = await txn.transaction();
      await tx.send({
        topic: s.topic('txn'),
        messages: Array.from({ length: 5 }, (_, i) => ({ value: `t${t}-${i}` })),
      });
      if (t % 3 === 2) await tx.abort();
      else await tx.commit();
    }

    const first = await snapshot(s.env);
    expect(first.parent).toBeNull();
    const m1 = await manifest(s.rt, first.snapshotId);
    expect(m1.records).toBe(700 + 300 + 400 + 8 * 5);
    expect(digest(await restoreView(s.rt, m1))).toBe(digest(await clusterView(s.rt, m1)));
    expect(Object.keys(m1.topics).sort()).toEqual(
      [s.topic('compacted'), s.topic('plain'), s.topic('txn')].sort(),
    );
    expect(m1.topics[s.topic('compacted')]!.configs['cleanup.policy']).toBe('compact');
    const view1 = await restoreView(s.rt, m1);
    expect(view1.get(`${s.topic('txn')}-0`)!.every((r) => !r.value!.toString().startsWith('t2-'))).toBe(true);

    // Traffic, then a second snapshot: only the new records are read, and its manifest names the chain.
    await produce('primary', s.topic('plain'), 1, batch(250));
    const tx = await txn.transaction();
    await tx.send({ topic: s.topic('txn'), messages: [{ value: 'late' }] });
    await tx.commit();
    await txn.disconnect();
    await eventually(
      'the last commit is stable',
      async () => (await s.rt.sourceReader.offsets(s.topic('txn'), [0]))[0]!.lastStable >= 62,
    );
    const second = await snapshot(s.env);
    expect(second.parent).toBe(first.snapshotId);
    expect(second.records).toBe(251);
    const m2 = await manifest(s.rt, second.snapshotId);
    const fresh = m2.segments.filter((seg) => !m1.segments.some((old) => old.key === seg.key));
    expect(fresh.reduce((sum, seg) => sum + seg.records, 0)).toBe(251);
    for (const seg of fresh)
      expect(seg.firstOffset).toBeGreaterThanOrEqual(m1.cut[seg.topic]![String(seg.partition)]!.end);
    expect(digest(await restoreView(s.rt, m2))).toBe(digest(await clusterView(s.rt, m2)));

    const list = JSON.parse((await runKdr(['snapshots', 'list', '--json'], { env: s.env })).stdout);
    expect(list.map((x: { snapshotId: string; parent: string | null }) => [x.snapshotId, x.parent])).toEqual([
      [first.snapshotId, null],
      [second.snapshotId, first.snapshotId],
    ]);
    // The DynamoDB index mirrors the manifests.
    expect((await s.rt.snapshotCatalog.list()).map((e) => e.snapshotId)).toEqual([
      first.snapshotId,
      second.snapshotId,
    ]);
  });

  it('keeps group offsets within the cut and never cuts inside an open transaction, under traffic', async () => {
    const s = setup('snapcut');
    const topic = s.topic('busy');
    await createTopics('primary', [{ topic, numPartitions: 3 }]);
    const group = uniqueName('snapcut-g');
    let stop = false;
    const producer = kafkaFor('primary').producer({ idempotent: true });
    await producer.connect();
    const producing = (async () => {
      for (let i = 0; !stop; i++) {
        await producer.send({
          topic,
          messages: Array.from({ length: 30 }, (_, j) => ({ partition: j % 3, value: `v${i}-${j}` })),
        });
        await sleep(20);
      }
    })();
    // A consumer reading uncommitted data can commit past the last stable offset: it must be clamped.
    const consumer = kafkaFor('primary').consumer({ groupId: group, readUncommitted: true });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ autoCommitInterval: 100, eachMessage: async () => {} });
    // An open transaction across the cut.
    const txn = kafkaFor('primary').producer({
      transactionalId: uniqueName('snapcut-txn'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await txn.connect();
    const open = await txn.transaction();
    const [sent] = await open.send({ topic, messages: [{ partition: 1, value: 'open' }] });
    const openOffset = Number(sent!.baseOffset);
    // Transactions over partitions 0 and 2, each committed before a snapshot starts.
    const cross = kafkaFor('primary').producer({
      transactionalId: uniqueName('snapcut-cross'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await cross.connect();
    const clamps: SnapshotManifest['clamped'] = [];
    // Let the consumer read past the open transaction (it reads uncommitted records) and commit.
    await sleep(1500);
    try {
      for (let round = 0; round < 3; round++) {
        const spanning = await cross.transaction();
        await spanning.send({
          topic,
          messages: [0, 2].map((partition) => ({ partition, value: `cross-${round}-${partition}` })),
        });
        await spanning.commit();
        const result = await snapshot(s.env);
        const m = await manifest(s.rt, result.snapshotId);
        for (const [g, topics] of Object.entries(m.groups)) {
          for (const [t, partitions] of Object.entries(topics)) {
            for (const [p, offset] of Object.entries(partitions))
              expect(offset, `${g} ${t}-${p}`).toBeLessThanOrEqual(m.cut[t]![p]!.end);
          }
        }
        for (const c of m.clamped) expect(c.committed).toBeGreaterThan(c.clampedTo);
        clamps.push(...m.clamped);
        // The open transaction's first record bounds the cut of its partition.
        expect(m.cut[topic]!['1']!.end).toBeLessThanOrEqual(openOffset);
        const view = await restoreView(s.rt, m);
        expect([...view.values()].flat().some((r) => r.value?.toString() === 'open')).toBe(false);
        // Across partitions: a transaction committed before the snapshot started is in the cut whole.
        for (const partition of [0, 2])
          expect(
            view
              .get(`${topic}-${partition}`)!
              .some((r) => r.value?.toString() === `cross-${round}-${partition}`),
            `round ${round} partition ${partition}`,
          ).toBe(true);
        await sleep(300);
      }
      // The consumer ahead of the last stable offset (partition 1, held back by the open transaction) was
      // clamped to the cut and reported.
      expect(clamps.some((c) => c.group === group && c.partition === 1)).toBe(true);
    } finally {
      stop = true;
      await producing;
      await open.abort();
      await Promise.all([producer.disconnect(), consumer.disconnect(), txn.disconnect(), cross.disconnect()]);
    }
  });

  it('records topic ids, and reads a recreated topic again from its start', async () => {
    const s = setup('snapids');
    const topic = s.topic('t');
    const rows = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => ({
        key: null,
        value: Buffer.from(`${tag}-${i}`),
        headers: [],
        timestamp: Date.now(),
      }));
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce('primary', topic, 0, rows(50, 'first'));
    const first = await snapshot(s.env);
    const before = (await manifest(s.rt, first.snapshotId)).topics[topic]!.topicId;
    expect(before).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // Deleted, recreated and refilled beyond the old cut: only the id tells.
    await s.rt.sourceAdmin.deleteTopic(topic);
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce('primary', topic, 0, rows(80, 'second'));
    const result = await runKdr(['snapshot', '--json'], { env: s.env });
    expect(result.exitCode, result.stderr).toBe(0);
    const second = JSON.parse(result.stdout);
    expect(second.warnings.join('\n')).toContain(
      `${topic} was recreated since the parent snapshot (topic id ${before} is now`,
    );
    const m = await manifest(s.rt, second.snapshotId);
    expect(m.topics[topic]!.topicId).not.toBe(before);
    const view = await restoreView(s.rt, m);
    expect(view.get(`${topic}-0`)!.map((r) => r.value!.toString())).toEqual(
      rows(80, 'second').map((r) => r.value.toString()),
    );
  });

  it('verify names a corrupted and a missing segment (exit 1); --deep compares with the cluster', async () => {
    const s = setup('snapverify', { KDR_SNAPSHOT_SEGMENT_BYTES: '20000' });
    await createTopics('primary', [{ topic: s.topic('t'), numPartitions: 1 }]);
    await produce(
      'primary',
      s.topic('t'),
      0,
      Array.from({ length: 500 }, (_, i) => ({
        key: null,
        value: Buffer.alloc(100, i),
        headers: [],
        timestamp: Date.now(),
      })),
    );
    const { snapshotId } = await snapshot(s.env);
    const ok = await runKdr(['verify', '--snapshot', snapshotId, '--deep', '--json'], { env: s.env });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).deep).toMatchObject({ compared: 500, differing: [] });
    const m = await manifest(s.rt, snapshotId);
    expect(m.segments.length).toBeGreaterThan(2);
    const [corrupt, missing] = [m.segments[0]!.key, m.segments[1]!.key];
    await s.rt.objectStore.put(corrupt, Buffer.from('not a segment'));
    await s.rt.objectStore.delete([missing]);
    const bad = await runKdr(['verify', '--snapshot', snapshotId], { env: s.env });
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toContain(`BAD ${corrupt}: segment checksum mismatch`);
    expect(bad.stdout).toContain(`BAD ${missing}: missing`);
    expect(bad.stderr).toContain(`failed verification: ${corrupt}, ${missing}`);
  });

  it('after a kill mid-way, leaves no manifest; the next run completes it; prune removes orphans', async () => {
    const s = setup('snapkill', { KDR_SNAPSHOT_SEGMENT_BYTES: '50000' });
    const topic = s.topic('big');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    for (let p = 0; p < 2; p++) {
      await produce(
        'primary',
        topic,
        p,
        Array.from({ length: 3000 }, (_, i) => ({
          key: Buffer.from(`k${i}`),
          value: Buffer.alloc(500, i),
          headers: [],
          timestamp: Date.now(),
        })),
      );
    }
    const progressKey = `${s.env.KDR_SNAPSHOT_PREFIX}/progress/primary.json`;
    const child: ChildProcess = spawn(process.execPath, [KDR_BIN, 'snapshot'], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...s.env },
      stdio: 'ignore',
    });
    await eventually('the snapshot saved progress', async () => {
      if (!(await s.rt.objectStore.exists(progressKey))) return false;
      return JSON.parse((await s.rt.objectStore.get(progressKey)).toString()).segments.length >= 2;
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(await s.rt.objectStore.list(`${s.env.KDR_SNAPSHOT_PREFIX}/manifests/`)).toEqual([]);
    const interrupted = JSON.parse((await s.rt.objectStore.get(progressKey)).toString()).snapshotId;
    // A segment uploaded by the killed run but never recorded, as a crash between upload and save leaves.
    const orphan = `${s.env.KDR_SNAPSHOT_PREFIX}/segments/primary/${topic}/0/orphan.kdrseg`;
    await s.rt.objectStore.put(orphan, Buffer.from('orphan'));

    await sleep(2500); // the killed run's lease expires
    const resumed = await snapshot(s.env);
    expect(resumed.snapshotId).toBe(interrupted);
    const m = await manifest(s.rt, resumed.snapshotId);
    expect(m.segments.reduce((sum, seg) => sum + seg.records, 0)).toBe(6000);
    expect(digest(await restoreView(s.rt, m))).toBe(digest(await clusterView(s.rt, m)));
    expect(await s.rt.objectStore.exists(progressKey)).toBe(false);

    const pruned = await runKdr(['snapshots', 'prune', '--keep', '1', '--json'], { env: s.env });
    expect(pruned.exitCode, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout)).toMatchObject({ removedSnapshots: [], keptSnapshots: 1 });
    expect(await s.rt.objectStore.exists(orphan)).toBe(false);
    expect((await runKdr(['verify', '--snapshot', resumed.snapshotId], { env: s.env })).exitCode).toBe(0);
  });

  it('prune keeps what the remaining snapshots reference, and deletes the rest', async () => {
    const s = setup('snapprune');
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const ids: string[] = [];
    for (let round = 0; round < 3; round++) {
      await produce(
        'primary',
        topic,
        0,
        Array.from({ length: 50 }, (_, i) => ({
          key: null,
          value: Buffer.from(`r${round}-${i}`),
          headers: [],
          timestamp: Date.now(),
        })),
      );
      ids.push((await snapshot(s.env)).snapshotId);
    }
    const result = JSON.parse(
      (await runKdr(['snapshots', 'prune', '--keep', '1', '--json'], { env: s.env })).stdout,
    );
    expect(result.removedSnapshots.sort()).toEqual(ids.slice(0, 2).sort());
    // The newest snapshot's chain still holds all 150 records: nothing it needs was deleted.
    const verified = await runKdr(['verify', '--snapshot', ids[2]!, '--json'], { env: s.env });
    expect(verified.exitCode, verified.stdout).toBe(0);
    expect(JSON.parse(verified.stdout).records).toBe(150);
    expect((await runKdr(['verify', '--snapshot', ids[0]!], { env: s.env })).stderr).toContain(
      `snapshot ${ids[0]} does not exist`,
    );
    expect(await s.rt.snapshotCatalog.list()).toHaveLength(1);
  });

  it('rejects bad input with a clear error and writes nothing', async () => {
    const s = setup('snapbad');
    // A selection that selects a topic: an empty one is refused before the bucket is looked at.
    await createTopics('primary', [{ topic: s.topic('t'), numPartitions: 1 }]);
    for (const [args, env, code, message] of [
      [['--cluster', 'tertiary'], {}, 2, 'expected primary or standby, got "tertiary"'],
      [['--topics', '(['], {}, 2, '--topics "([" is not a valid regular expression'],
      [[], { KDR_BUCKET: 'kdr-no-such-bucket' }, 4, 'bucket kdr-no-such-bucket does not exist (KDR_BUCKET)'],
      [[], { KDR_SNAPSHOT_SEGMENT_BYTES: '0' }, 2, 'KDR_SNAPSHOT_SEGMENT_BYTES: expected at least 1, got 0'],
    ] as const) {
      const result = await runKdr(['snapshot', ...args], { env: { ...s.env, ...env } });
      expect(result.exitCode, result.stderr).toBe(code);
      expect(result.stderr).toContain(message);
    }
    for (const [args, message] of [
      [['prune'], 'prune needs --keep N or --older-than DURATION'],
      [['prune', '--older-than', 'soon'], 'expected a duration such as 7d, 12h, 30m or 45s, got "soon"'],
      [['prune', '--keep', '0'], 'expected a number of snapshots to keep, at least 1, got "0"'],
    ] as const) {
      const result = await runKdr(['snapshots', ...args], { env: s.env });
      expect(result.exitCode).toBeGreaterThan(0);
      expect(result.stderr).toContain(message);
    }
    const badId = await runKdr(['verify', '--snapshot', '../etc/passwd'], { env: s.env });
    expect(badId.exitCode).toBe(2);
    expect(await s.rt.objectStore.list(s.env.KDR_SNAPSHOT_PREFIX)).toEqual([]);
    expect(await s.rt.snapshotCatalog.list()).toEqual([]);
  });
});
