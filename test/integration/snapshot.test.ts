import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import { loadConfig } from '../../src/config.ts';
import type { SourceRecord } from '../../src/core/records.ts';
import { decodeSegment } from '../../src/core/segment.ts';
import type { Gap, SnapshotManifest } from '../../src/core/snapshot.ts';
import { silentLogger } from '../../src/logger.ts';
import { snapshotDeps } from '../../src/operations.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runSnapshot } from '../../src/services/snapshot.ts';
import { KDR_BIN, runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, kafkaFor, readWithKcat, uniqueName, withAdmin } from '../helpers/lab.ts';
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
    out.set(key, [
      ...(out.get(key) ?? []),
      ...(await decodeSegment(await rt.objectStore.get(s.key), s.sha256)),
    ]);
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
    // The 251 new records, and the compacted topic again, whole (see planRanges: no resurrected keys).
    expect(second.records).toBe(251 + 400);
    const m2 = await manifest(s.rt, second.snapshotId);
    const fresh = m2.segments.filter((seg) => !m1.segments.some((old) => old.key === seg.key));
    const incremental = fresh.filter((seg) => seg.topic !== s.topic('compacted'));
    expect(incremental.reduce((sum, seg) => sum + seg.records, 0)).toBe(251);
    for (const seg of incremental)
      expect(seg.firstOffset).toBeGreaterThanOrEqual(m1.cut[seg.topic]![String(seg.partition)]!.end);
    expect(m2.cut[s.topic('compacted')]!['0']!.start).toBe(0);
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

/** Kafka's own DeleteRecords: every record below `offset` (-1: the high watermark) leaves the log. */
async function deleteRecords(topic: string, partitions: { partition: number; offset: number }[]) {
  await withAdmin('primary', async (admin) => {
    await admin.fetchTopicMetadata({ topics: [topic] });
    await admin.deleteTopicRecords({
      topic,
      partitions: partitions.map((p) => ({ partition: p.partition, offset: String(p.offset) })),
    });
  });
}

/** `target` with some of its methods replaced (the rest bound to it): a store or catalog that fails on cue. */
function intercept<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(t, prop) {
      if (prop in overrides) return overrides[prop as keyof T];
      const value = Reflect.get(t, prop, t);
      return typeof value === 'function' ? value.bind(t) : value;
    },
  });
}

const progressOf = async (s: ReturnType<typeof setup>) => {
  const key = `${s.env.KDR_SNAPSHOT_PREFIX}/progress/primary.json`;
  if (!(await s.rt.objectStore.exists(key))) return undefined;
  return JSON.parse((await s.rt.objectStore.get(key)).toString()) as {
    snapshotId: string;
    ranges: { topic: string; partition: number; next: number; to: number }[];
    segments: unknown[];
  };
};

const values = (n: number, tag: string) =>
  Array.from({ length: n }, (_, i) => ({
    key: null,
    value: Buffer.from(`${tag}-${i}`.padEnd(100, '.')),
    headers: [],
    timestamp: Date.now(),
  }));

const gapOf = (topic: string, partition: number, from: number, to: number, after: number): Gap => ({
  topic,
  partition,
  from,
  to,
  count: to - from,
  seenAt: expect.toSatisfy((t: string) => Date.parse(t) >= after && Date.parse(t) <= Date.now()),
});

describe('snapshots never stop for good', () => {
  it('a partition failing while its last segment uploads: the run fails once that upload is saved, and writes nothing after', async () => {
    const s = setup('snaplate', { KDR_SNAPSHOT_SEGMENT_BYTES: '20000' });
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce('primary', topic, 0, values(600, 'a'), { batch: 100 });
    const deps = snapshotDeps(s.rt, 'primary');
    let fetches = 0;
    const reader = intercept(deps.reader, {
      fetch: async (tp, offset, options) => {
        if (++fetches > 1) throw new Error('broker unreachable (injected)');
        // 150 records, less than a segment: they are pending when the next fetch fails.
        const fetched = await s.rt.sourceReader.fetch(tp, offset, options);
        const records = fetched.records.slice(0, 150);
        return { ...fetched, records, nextOffset: records.at(-1)!.offset + 1 };
      },
    });
    const writes: number[] = [];
    const objects = intercept(deps.objects, {
      put: async (key, body, options) => {
        if (key.includes('/segments/')) await sleep(1000); // a slow upload
        await s.rt.objectStore.put(key, body, options);
        writes.push(Date.now());
      },
    });
    await expect(runSnapshot({ ...deps, reader, objects })).rejects.toThrow('broker unreachable (injected)');
    const failedAt = Date.now();
    const written = writes.length;
    await sleep(2000);
    expect(writes.length).toBe(written);
    expect(Math.max(...writes)).toBeLessThanOrEqual(failedAt);
    // What was read before the failure is uploaded and saved; the next run reads on from there.
    const progress = (await progressOf(s))!;
    expect(progress.ranges[0]!.next).toBe(150);
    expect(progress.segments).toHaveLength(1);
    const done = await snapshot(s.env);
    expect([done.snapshotId, done.records]).toEqual([progress.snapshotId, 600]);
  });

  it('partitions read at the same time: runs stopped with several half read, or by one failing, lose and double nothing', async () => {
    const s = setup('snappar', { KDR_SNAPSHOT_SEGMENT_BYTES: '20000' });
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 4 }]);
    for (const p of [0, 1, 2, 3]) await produce('primary', topic, p, values(800, `p${p}`), { batch: 100 });
    const deps = { ...snapshotDeps(s.rt, 'primary'), rangesInFlight: 3 };
    // A run whose deadline has passed stops after its first segment: the other partitions in flight finish
    // the segment they are uploading, so several stop half read.
    const first = await runSnapshot(deps, { deadline: Date.now() });
    if (first.status !== 'in-progress') throw new Error('the first run was expected to stop early');
    const halfRead = (await progressOf(s))!.ranges.filter((r) => r.next > 0 && r.next < r.to);
    expect(halfRead.length).toBeGreaterThanOrEqual(2);
    // Next, partition 2's fetches fail (a broker refusing) while the others upload: the run fails, and what
    // it saved stays true.
    const failing = intercept(deps.reader, {
      fetch: async (tp, offset, options) => {
        if (tp.partition === 2) throw new Error('broker unreachable (injected)');
        return s.rt.sourceReader.fetch(tp, offset, options);
      },
    });
    await expect(runSnapshot({ ...deps, reader: failing })).rejects.toThrow('broker unreachable (injected)');
    const afterFailure = (await progressOf(s))!;
    expect(afterFailure.snapshotId).toBe(first.snapshotId);
    // Then runs stopped by their deadline again, until one completes.
    let result = await runSnapshot(deps, { deadline: Date.now() });
    for (let runs = 1; result.status === 'in-progress'; runs++) {
      expect(runs).toBeLessThan(200);
      result = await runSnapshot(deps, { deadline: Date.now() });
    }
    if (result.status !== 'complete') throw new Error('unreachable');
    const m = result.manifest;
    expect(m.snapshotId).toBe(first.snapshotId);
    expect(m.records).toBe(3200);
    expect(m.segments.reduce((sum, seg) => sum + seg.records, 0)).toBe(3200);
    // Segments of a partition follow each other without overlap or hole.
    for (const p of [0, 1, 2, 3]) {
      const own = m.segments.filter((seg) => seg.partition === p);
      for (let i = 1; i < own.length; i++) expect(own[i]!.firstOffset).toBe(own[i - 1]!.lastOffset + 1);
    }
    expect(digest(await restoreView(s.rt, m))).toBe(digest(await clusterView(s.rt, m)));
    expect((await runKdr(['verify', '--snapshot', m.snapshotId], { env: s.env })).exitCode).toBe(0);
  });

  it('a range purged while a snapshot is in progress is a gap; it completes and restores', async () => {
    const s = setup('snapdel', { KDR_SNAPSHOT_SEGMENT_BYTES: '20000' });
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    for (const p of [0, 1]) await produce('primary', topic, p, values(1000, `p${p}`), { batch: 50 });
    // The first run stops after its first segments (its deadline is already past), inside partition 0.
    // One partition at a time, so that partition 1 is still unread when the run stops.
    const first = await runSnapshot(
      { ...snapshotDeps(s.rt, 'primary'), rangesInFlight: 1 },
      { deadline: Date.now() },
    );
    if (first.status !== 'in-progress') throw new Error('the first run was expected to stop early');
    const [r0, r1] = (await progressOf(s))!.ranges;
    expect(r0!.next).toBeGreaterThan(0);
    expect(r0!.next).toBeLessThan(600);
    expect(r1!.next).toBe(0);
    // DeleteRecords past what it read on partition 0, and on partition 1, not read at all yet.
    const read = r0!.next;
    const purgedAt = Date.now();
    await deleteRecords(topic, [
      { partition: 0, offset: read + 300 },
      { partition: 1, offset: 200 },
    ]);
    const done = await snapshot(s.env);
    expect(done.snapshotId).toBe(first.snapshotId);
    const m = await manifest(s.rt, done.snapshotId);
    expect(m.gaps).toEqual([gapOf(topic, 0, read, read + 300, purgedAt), gapOf(topic, 1, 0, 200, purgedAt)]);
    expect(done.gaps).toHaveLength(2);
    expect(m.records).toBe(2000 - 500);
    expect(await progressOf(s)).toBeUndefined();
    const expected = new Map([
      [0, values(1000, 'p0').filter((_, i) => i < read || i >= read + 300)],
      [1, values(1000, 'p1').slice(200)],
    ]);
    const view = await restoreView(s.rt, m);
    for (const [p, rows] of expected)
      expect(view.get(`${topic}-${p}`)!.map((r) => r.value!.toString())).toEqual(
        rows.map((r) => r.value.toString()),
      );
    // A restore of it writes what it holds, and says what it lacks.
    const restored = await runKdr(
      ['restore', '--snapshot', done.snapshotId, '--target', 'standby', '--topic-prefix', 'gap.', '--json'],
      { env: s.env },
    );
    expect(restored.exitCode, restored.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(restored.stdout).warnings.join('\n')).toContain(
      `${topic}-0: offsets ${read}-${read + 299} were deleted`,
    );
    for (const [p, rows] of expected)
      expect(
        (await readWithKcat('standby', `gap.${topic}`, { partition: p })).map((r) => r.value!.toString()),
      ).toEqual(rows.map((r) => r.value.toString()));
  });

  it('a range purged while the snapshot is reading it (OFFSET_OUT_OF_RANGE) is a gap of that run', async () => {
    const s = setup('snapread');
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce('primary', topic, 0, values(600, 'a'), { batch: 50 });
    const deps = snapshotDeps(s.rt, 'primary');
    // One batch per fetch; before the third, DeleteRecords removes the next 200 offsets under the reader.
    let fetches = 0;
    let purgedAt = 0;
    const reader = intercept(deps.reader, {
      fetch: async (tp, offset) => {
        if (++fetches === 3) {
          expect(offset).toBe(100);
          purgedAt = Date.now();
          await deleteRecords(topic, [{ partition: 0, offset: offset + 200 }]);
        }
        return s.rt.sourceReader.fetch(tp, offset, { maxBytes: 1 });
      },
    });
    const result = await runSnapshot({ ...deps, reader });
    if (result.status !== 'complete') throw new Error('expected the snapshot to complete');
    expect(result.manifest.gaps).toEqual([gapOf(topic, 0, 100, 300, purgedAt)]);
    expect(result.warnings.join('\n')).toContain(`${topic}-0: offsets 100-299 were deleted`);
    const view = await restoreView(s.rt, result.manifest);
    expect(view.get(`${topic}-0`)!.map((r) => r.value!.toString())).toEqual(
      values(600, 'a')
        .filter((_, i) => i < 100 || i >= 300)
        .map((r) => r.value.toString()),
    );
    expect(await progressOf(s)).toBeUndefined();
  });

  it('a plain and a transactional topic purged to their end before a snapshot are gaps', async () => {
    const s = setup('snapend');
    const [plain, txnTopic] = [s.topic('plain'), s.topic('txn')];
    await createTopics('primary', [
      { topic: plain, numPartitions: 1 },
      { topic: txnTopic, numPartitions: 1 },
    ]);
    const txn = kafkaFor('primary').producer({
      transactionalId: uniqueName('snapend-txn'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await txn.connect();
    const transactions = async (count: number, tag: string) => {
      for (let t = 0; t < count; t++) {
        const tx = await txn.transaction();
        await tx.send({
          topic: txnTopic,
          messages: Array.from({ length: 5 }, (_, i) => ({ value: `${tag}${t}-${i}` })),
        });
        if (t === 1) await tx.abort();
        else await tx.commit();
      }
    };
    let parent: SnapshotManifest;
    try {
      await produce('primary', plain, 0, values(100, 'a'));
      await transactions(4, 'a');
      parent = await manifest(s.rt, (await snapshot(s.env)).snapshotId);
      await produce('primary', plain, 0, values(50, 'b'));
      await transactions(3, 'b');
    } finally {
      await txn.disconnect();
    }
    const ends = new Map<string, number>();
    for (const topic of [plain, txnTopic]) {
      const [o] = await s.rt.sourceReader.offsets(topic, [0]);
      expect(o!.lastStable, topic).toBe(o!.highWatermark);
      ends.set(topic, o!.highWatermark);
    }
    // Transaction markers take offsets: the transactional topic ends past its records.
    expect(ends.get(txnTopic)).toBe(7 * 6);
    const purgedAt = Date.now();
    for (const topic of [plain, txnTopic]) await deleteRecords(topic, [{ partition: 0, offset: -1 }]);
    const second = await snapshot(s.env);
    expect(second.parent).toBe(parent.snapshotId);
    const m = await manifest(s.rt, second.snapshotId);
    expect(m.records).toBe(0);
    expect(m.gaps).toEqual(
      [plain, txnTopic].sort().map((t) => gapOf(t, 0, parent.cut[t]!['0']!.end, ends.get(t)!, purgedAt)),
    );
    // Later snapshots continue from there, and carry the gap along the chain.
    await produce('primary', plain, 0, values(10, 'c'));
    const third = await manifest(s.rt, (await snapshot(s.env)).snapshotId);
    expect(third.records).toBe(10);
    expect(third.gaps).toEqual(m.gaps);
  });

  for (const step of ['manifest', 'index'] as const) {
    it(`a snapshot cut short after its ${step} write completes on the next run, once`, async () => {
      const s = setup(`snapdone-${step}`);
      const topic = s.topic('t');
      await createTopics('primary', [{ topic, numPartitions: 1 }]);
      await produce('primary', topic, 0, values(100, 'a'));
      const deps = snapshotDeps(s.rt, 'primary');
      let killed = false;
      const kill = () => {
        killed = true;
        throw new Error(`killed right after the ${step} write`);
      };
      const objects = intercept(deps.objects, {
        put: async (key, body, options) => {
          await s.rt.objectStore.put(key, body, options);
          if (step === 'manifest' && !killed && key.includes('/manifests/')) kill();
        },
      });
      const catalog = intercept(deps.catalog, {
        index: async (entry) => {
          await s.rt.snapshotCatalog.index(entry);
          if (step === 'index' && !killed) kill();
        },
      });
      await expect(runSnapshot({ ...deps, objects, catalog })).rejects.toThrow(
        `killed right after the ${step}`,
      );
      const interrupted = (await progressOf(s))!.snapshotId;
      const done = await snapshot(s.env);
      expect(done.snapshotId).toBe(interrupted);
      expect(done.records).toBe(100);
      expect(await progressOf(s)).toBeUndefined();
      const list = await runKdr(['snapshots', 'list', '--json'], { env: s.env });
      expect(JSON.parse(list.stdout).map((x: { snapshotId: string }) => x.snapshotId)).toEqual([interrupted]);
      expect((await s.rt.snapshotCatalog.list()).map((e) => e.snapshotId)).toEqual([interrupted]);
      // The next snapshot is a child of it, as after any complete snapshot.
      await produce('primary', topic, 0, values(10, 'b'));
      const next = await snapshot(s.env);
      expect([next.parent, next.records]).toEqual([interrupted, 10]);
    });
  }

  it('a runner whose lease was taken over stops without writing its progress', async () => {
    const s = setup('snaplease', { KDR_SNAPSHOT_SEGMENT_BYTES: '20000', KDR_SNAPSHOT_LEASE_MS: '1500' });
    const topic = s.topic('t');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce('primary', topic, 0, values(1000, 'a'));
    const deps = snapshotDeps(s.rt, 'primary');
    const progressKey = `${s.env.KDR_SNAPSHOT_PREFIX}/progress/primary.json`;
    let takenOver = false;
    const writtenAfter: string[] = [];
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => {
      resume = resolve;
    });
    let stalled!: () => void;
    const stalling = new Promise<void>((resolve) => {
      stalled = resolve;
    });
    const objects = intercept(deps.objects, {
      put: async (key, body, options) => {
        if (takenOver) writtenAfter.push(key);
        if (key.includes('/segments/') && !takenOver) {
          stalled();
          await resumed;
        }
        await s.rt.objectStore.put(key, body, options);
      },
    });
    // Runner A stalls in its first segment upload, past its lease; runner B takes the lease over.
    const a = runSnapshot({ ...deps, objects, owner: 'runner-a' }).then(
      () => new Error('runner A completed'),
      (error: Error) => error,
    );
    await stalling;
    await sleep(2000);
    await s.rt.snapshotCatalog.acquireLease(deps.cluster, 'runner-b', 60_000);
    takenOver = true;
    resume();
    const error = await a;
    // The stalled segment lands (segments are immutable), but no progress object is written after it.
    expect(writtenAfter.filter((key) => key === progressKey)).toEqual([]);
    expect((await progressOf(s))!.segments).toEqual([]);
    expect(error.message).toContain(
      `this run (runner-a) lost the snapshot lease of ${deps.cluster} (a snapshot of ${deps.cluster} is already running (held by runner-b`,
    );
    expect(error.message).toContain('it stops without writing its progress');
    // A's lease release did not free B's lease.
    await expect(s.rt.snapshotCatalog.acquireLease(deps.cluster, 'runner-c', 1000)).rejects.toThrow(
      'held by runner-b',
    );
    await s.rt.snapshotCatalog.releaseLease(deps.cluster, 'runner-b');
  });

  it('a key deleted and compacted away stays deleted in a chain of snapshots', {
    timeout: 300_000,
  }, async () => {
    const s = setup('snapcompact');
    const topic = s.topic('c');
    await createTopics('primary', [
      {
        topic,
        numPartitions: 1,
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'delete.retention.ms', value: '1000' },
          { name: 'segment.ms', value: '1000' },
          { name: 'min.cleanable.dirty.ratio', value: '0.01' },
        ],
      },
    ]);
    const producer = kafkaFor('primary').producer({ idempotent: true });
    await producer.connect();
    const keysOf = (records: { key: Buffer | null }[]) => records.map((r) => r.key?.toString());
    try {
      await producer.send({
        topic,
        messages: [
          { key: 'k', value: 'v1' },
          { key: 'stays', value: 'here' },
        ],
      });
      const first = await snapshot(s.env);
      expect(
        keysOf([...(await restoreView(s.rt, await manifest(s.rt, first.snapshotId))).values()].flat()),
      ).toEqual(['k', 'stays']);
      await producer.send({ topic, messages: [{ key: 'k', value: null }] });
      // Filler rolls segments (segment.ms) and keeps the log dirty until the cleaner removed v1, then the
      // tombstone (after delete.retention.ms).
      let filler = 0;
      await eventually(
        'the cleaner removed k=v1 and its tombstone',
        async () => {
          await producer.send({ topic, messages: [{ key: `filler-${filler++}`, value: 'x' }] });
          const [o] = await s.rt.sourceReader.offsets(topic, [0]);
          const records = [];
          for await (const batch of s.rt.sourceReader.readRange(
            { topic, partition: 0 },
            o!.logStart,
            o!.highWatermark,
          ))
            records.push(...batch);
          return !keysOf(records).includes('k');
        },
        150_000,
      );
      const second = await snapshot(s.env);
      expect(second.parent).toBe(first.snapshotId);
      const restored = await runKdr(
        [
          'restore',
          '--snapshot',
          second.snapshotId,
          '--target',
          'standby',
          '--topic-prefix',
          'cmp.',
          '--json',
        ],
        { env: s.env },
      );
      expect(restored.exitCode, restored.stderr.slice(-2000)).toBe(0);
      const keys = keysOf(await readWithKcat('standby', `cmp.${topic}`));
      expect(keys).not.toContain('k');
      expect(keys).toContain('stays');
      expect(keys).toContain('filler-0');
    } finally {
      await producer.disconnect();
    }
  });
});
