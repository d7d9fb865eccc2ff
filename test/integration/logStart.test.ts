import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import type { SourceRecord } from '../../src/core/records.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  createTopics,
  eventually,
  kafkaFor,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import { fillPartitions, mirroredSourceOffsets } from '../helpers/records.ts';

/**
 * Log start on both sides: what retention or DeleteRecords removed before kdr read it is a recorded gap
 * (from, to exclusive, count of offsets), never an OFFSET_OUT_OF_RANGE failure, in the checkpoint, the
 * planned failover's drain and the failback's export and drain. Each test has a pair of its own.
 */

const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

function drill(prefix: string) {
  const base = uniqueName(prefix);
  const pair = `${base}-pair`;
  const env = { KDR_PAIR: pair, KDR_TOPICS: `${base}-t-.*`, KDR_GROUPS: `${base}-g-.*` };
  const cfg = loadConfig({ ...process.env, ...env });
  const rt = createRuntime(cfg, silentLogger);
  runtimes.push(rt);
  return {
    base,
    pair,
    env,
    rt,
    topic: (name: string) => `${base}-t-${name}`,
    group: (name: string) => `${base}-g-${name}`,
  };
}

/** Committed transactions of the given sizes on one primary partition (kafkajs), each ending in a marker. */
async function produceTransactions(topic: string, partition: number, sizes: number[], label: string) {
  const producer = kafkaFor('primary').producer({
    transactionalId: uniqueName('ls-tx'),
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    for (const [t, n] of sizes.entries()) {
      const tx = await producer.transaction();
      await tx.send({
        topic,
        messages: Array.from({ length: n }, (_, i) => ({ partition, value: `${label}-${t}-${i}` })),
      });
      await tx.commit();
    }
  } finally {
    await producer.disconnect();
  }
}

/** Plain (idempotent, non-transactional) records appended to one partition of a cluster. */
async function producePlain(
  cluster: 'primary' | 'standby',
  topic: string,
  partition: number,
  n: number,
  label: string,
) {
  const producer = kafkaFor(cluster).producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic,
      messages: Array.from({ length: n }, (_, i) => ({ partition, value: `${label}-${i}` })),
    });
  } finally {
    await producer.disconnect();
  }
}

/** DeleteRecords: the partition's log start moves to `offset` (-1: its high watermark). */
async function deleteRecords(
  cluster: 'primary' | 'standby',
  topic: string,
  partition: number,
  offset: number,
) {
  await withAdmin(cluster, async (admin) => {
    // kafkajs's deleteTopicRecords finds the leaders in metadata it does not load itself.
    await admin.fetchTopicMetadata({ topics: [topic] });
    await admin.deleteTopicRecords({ topic, partitions: [{ partition, offset: String(offset) }] });
  });
}

/** Waits until read_committed readers see `lastStable` on the primary (commit markers are written last). */
async function stableAt(rt: Runtime, topic: string, partition: number, lastStable: number) {
  await eventually(`${topic}-${partition} stable at ${lastStable}`, async () => {
    const [o] = await rt.sourceReader.offsets(topic, [partition]);
    return o!.lastStable === lastStable;
  });
}

/** Mirrors every committed record of the partitions in process (the engine), as the mirror would. */
async function mirrorAll(rt: Runtime, topic: string, partitions: number[]) {
  for (const partition of partitions) {
    const tp = { topic, partition };
    const [o] = await rt.sourceReader.offsets(topic, [partition]);
    const records: SourceRecord[] = [];
    for await (const batch of rt.sourceReader.readRange(tp, o!.logStart, o!.lastStable))
      records.push(...batch);
    await rt.engine.mirrorBatch(tp, records);
  }
}

interface Gap {
  topic: string;
  partition: number;
  from: number;
  to: number;
  count: number;
  markersOnly?: boolean;
  seenAt: number;
}
const gapShape = (g: Gap) => ({
  topic: g.topic,
  partition: g.partition,
  from: g.from,
  to: g.to,
  count: g.count,
  markersOnly: g.markersOnly ?? false,
});

/** Brings the drill's pair back to MIRRORING with the primary active, whatever state a failure left it in. */
async function restoreMirroring(rt: Runtime) {
  const owner = 'logStart.test cleanup';
  let control = await rt.stateStore.getControl();
  if (control.state === 'FAILED_OVER')
    control = await rt.stateStore.transition(control.epoch, {
      state: 'FAILING_BACK',
      activeCluster: control.activeCluster,
      owner,
      reason: 'test cleanup',
    });
  if (control.state !== 'MIRRORING')
    control = await rt.stateStore.transition(control.epoch, {
      state: 'MIRRORING',
      activeCluster: rt.config.primary.alias,
      owner,
      reason: 'test cleanup',
    });
  return control;
}

describe('log start', () => {
  it('checkpoint: ranges deleted before they were mirrored are gaps; every group is checkpointed', async () => {
    const d = drill('lsck');
    const plain = d.topic('plain');
    const tx = d.topic('tx');
    await createTopics('primary', [
      { topic: plain, numPartitions: 1 },
      { topic: tx, numPartitions: 3 },
    ]);
    // Mirrored: plain 0-39; tx-0 three transactions (records 0-9, 11-20, 22-31; markers 10, 21, 32);
    // tx-1 and tx-2 one transaction each (records 0-4, marker 5).
    await fillPartitions(plain, [0], 40, (_, i) => `plain-${i}`);
    await produceTransactions(tx, 0, [10, 10, 10], 'tx0');
    await produceTransactions(tx, 1, [5], 'tx1');
    await produceTransactions(tx, 2, [5], 'tx2');
    await stableAt(d.rt, tx, 0, 33);
    await stableAt(d.rt, tx, 1, 6);
    await stableAt(d.rt, tx, 2, 6);
    await mirrorAll(d.rt, plain, [0]);
    await mirrorAll(d.rt, tx, [0, 1, 2]);
    expect(await mirroredSourceOffsets(tx, 0)).toHaveLength(30);

    // tx-2 idle past retention before kdr ever looked: its trailing marker goes, log start = 6.
    await deleteRecords('primary', tx, 2, -1);
    // A first checkpoint while tx-1 still has its marker: it sees offset 5 holds no record.
    const first = await runKdr(['checkpoint', '--json'], { env: d.env });
    expect(first.exitCode, first.stderr).toBe(0);
    const firstTx1 = JSON.parse(first.stdout).observations.find(
      (o: { topic: string; partition: number }) => o.topic === tx && o.partition === 1,
    );
    expect(firstTx1).toMatchObject({ lastMirrored: 4, endOffset: 6, markersOnlyTo: 6 });

    // Not mirrored, then deleted: plain 40-69 of 40-99; tx-0 32-48 of two more transactions (33-42, 44-53,
    // markers 43, 54); tx-1 idle past retention (its marker, offset 5).
    await fillPartitions(plain, [0], 60, (_, i) => `plain-late-${i}`);
    await produceTransactions(tx, 0, [10, 10], 'tx0-late');
    await stableAt(d.rt, tx, 0, 55);
    await deleteRecords('primary', plain, 0, 70);
    await deleteRecords('primary', tx, 0, 49);
    await deleteRecords('primary', tx, 1, -1);
    await commitGroupOffsets('primary', d.group('a'), plain, [50]);
    await commitGroupOffsets('primary', d.group('b'), tx, [40, 5, 6]);

    const started = Date.now();
    const result = await runKdr(['checkpoint', '--json'], { env: d.env });
    expect(result.exitCode, result.stderr).toBe(0);
    const checkpoint = JSON.parse(result.stdout);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(checkpoint.groups).toBe(2);
    expect(
      checkpoint.checkpoints
        .map((c: { group: string; topic: string; partition: number; sourceOffset: number }) =>
          [c.group, c.topic, c.partition, c.sourceOffset].join('/'),
        )
        .sort(),
    ).toEqual(
      [
        `${d.group('a')}/${plain}/0/50`,
        `${d.group('b')}/${tx}/0/40`,
        `${d.group('b')}/${tx}/1/5`,
        `${d.group('b')}/${tx}/2/6`,
      ].sort(),
    );
    const gaps = (checkpoint.gaps as Gap[]).map(gapShape);
    expect(gaps).toEqual([
      { topic: plain, partition: 0, from: 40, to: 70, count: 30, markersOnly: false },
      { topic: tx, partition: 0, from: 32, to: 49, count: 17, markersOnly: false },
      // Only the marker, and the first checkpoint saw that: nothing was lost.
      { topic: tx, partition: 1, from: 5, to: 6, count: 1, markersOnly: true },
      // Only the marker too, but nothing saw it before it went: at most one record.
      { topic: tx, partition: 2, from: 5, to: 6, count: 1, markersOnly: false },
    ]);
    const observations = checkpoint.observations as {
      topic: string;
      partition: number;
      endOffset: number;
      lastMirrored: number;
      firstUnmirroredTimestamp: number | null;
      gap?: Gap;
    }[];
    const byTp = (topic: string, partition: number) =>
      observations.find((o) => o.topic === topic && o.partition === partition)!;
    for (const g of checkpoint.gaps as Gap[]) expect(byTp(g.topic, g.partition).gap).toEqual(g);
    expect(byTp(plain, 0)).toMatchObject({ endOffset: 100, lastMirrored: 39 });
    expect(byTp(tx, 0)).toMatchObject({ endOffset: 55, lastMirrored: 31 });
    // The first record not mirrored is the first one still there, at log start.
    const onPrimary = await readWithKcat('primary', plain);
    expect(byTp(plain, 0).firstUnmirroredTimestamp).toBe(onPrimary.find((r) => r.offset === 70)!.timestamp);
    const txOnPrimary = await readWithKcat('primary', tx, { partition: 0 });
    expect(byTp(tx, 0).firstUnmirroredTimestamp).toBe(txOnPrimary.find((r) => r.offset === 49)!.timestamp);
    expect(byTp(tx, 1).firstUnmirroredTimestamp).toBeNull();

    // The text output names them too; the status shows this very checkpoint.
    const text = await runKdr(['checkpoint'], { env: d.env });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toContain(
      `gap: ${plain}-0: offsets 40-69 were deleted on the primary before kdr read them; at most 30 records lost`,
    );
    expect(text.stdout).toContain(
      `gap: ${tx}-1: offset 5 was deleted on the primary before kdr read it; only transaction markers`,
    );
    const status = JSON.parse((await runKdr(['status', '--json'], { env: d.env })).stdout);
    expect(status.checkpoint.groups).toBe(2);
  });

  it('planned failover and failback across ranges deleted on both clusters before kdr read them', {
    timeout: 400_000,
  }, async () => {
    const d = drill('lsfo');
    const plain = d.topic('plain');
    const tx = d.topic('tx');
    const group = d.group('app');
    const txGroup = d.group('txapp');
    await createTopics('primary', [
      { topic: plain, numPartitions: 2 },
      { topic: tx, numPartitions: 1 },
    ]);
    try {
      // Mirrored: plain 0-99 on both partitions; tx five transactions (records 0-9 ... 44-53, markers
      // 10, 21, 32, 43, 54).
      await fillPartitions(plain, [0, 1], 100, (p, i) => `before-${p}-${i}`);
      await produceTransactions(tx, 0, [10, 10, 10, 10, 10], 'tx-before');
      await stableAt(d.rt, tx, 0, 55);
      await mirrorAll(d.rt, plain, [0, 1]);
      await mirrorAll(d.rt, tx, [0]);

      // Not mirrored: plain 100-149; tx 55-64, 66-75 (markers 65, 76). Deleted before the failover
      // drains them: plain-0 100-119, tx 54-69 (a marker, then records).
      await fillPartitions(plain, [0, 1], 50, (p, i) => `late-${p}-${i}`);
      await produceTransactions(tx, 0, [10, 10], 'tx-late');
      await stableAt(d.rt, tx, 0, 77);
      await deleteRecords('primary', plain, 0, 120);
      await deleteRecords('primary', tx, 0, 70);
      await commitGroupOffsets('primary', group, plain, [110, 40]);
      await commitGroupOffsets('primary', txGroup, tx, [60]);

      const failover = await runKdr(['failover', '--planned', '--timeout', '60', '--json'], { env: d.env });
      expect(failover.exitCode, failover.stderr.slice(-2000)).toBe(0);
      const report = JSON.parse(failover.stdout);
      expect(report).toMatchObject({
        pair: d.pair,
        mode: 'planned',
        from: 'primary',
        to: 'standby',
        epoch: 2,
      });
      expect((report.rpo.gaps as Gap[]).map(gapShape)).toEqual([
        { topic: plain, partition: 0, from: 100, to: 120, count: 20, markersOnly: false },
        { topic: tx, partition: 0, from: 54, to: 70, count: 16, markersOnly: false },
      ]);
      // What was still there reached the standby: the RPO is zero, the gaps are on their own.
      expect(report.rpo.records).toBe(0);
      expect(await mirroredSourceOffsets(plain, 0)).toEqual([
        ...Array.from({ length: 100 }, (_, i) => i),
        ...Array.from({ length: 30 }, (_, i) => 120 + i),
      ]);
      expect(await mirroredSourceOffsets(plain, 1)).toEqual(Array.from({ length: 150 }, (_, i) => i));
      const txMirrored = await mirroredSourceOffsets(tx, 0);
      expect(txMirrored.slice(-7)).toEqual([53, 70, 71, 72, 73, 74, 75]);
      // A group inside the gap starts at the copy of the first record after it.
      const standbyPlain0 = await readWithKcat('standby', plain, { partition: 0 });
      const copyOf = (records: typeof standbyPlain0, t: string, p: number, offset: number) =>
        records.find((r) =>
          r.headers.some(([k, v]) => k === 'kdr.src' && v?.toString() === `primary/${t}/${p}/${offset}`),
        )!.offset;
      const moves = report.groups[group] as { partition: number; standbyOffset: number; exact: boolean }[];
      expect(moves.find((m) => m.partition === 0)).toMatchObject({
        standbyOffset: copyOf(standbyPlain0, plain, 0, 120),
        exact: true,
      });
      const standbyTx = await readWithKcat('standby', tx, { partition: 0 });
      expect(report.groups[txGroup][0]).toMatchObject({
        standbyOffset: copyOf(standbyTx, tx, 0, 70),
        exact: true,
      });
      const text = await runKdr(['status', '--json'], { env: d.env });
      expect(JSON.parse(text.stdout).control).toMatchObject({
        state: 'FAILED_OVER',
        activeCluster: 'standby',
      });

      // Failed over. The old primary still got writes nobody mirrored (plain 150-179 on both partitions;
      // tx 77-86, marker 87), and then lost some of them: plain-0 150-164, tx 76-79 (the failover's last
      // marker, then records).
      await fillPartitions(plain, [0, 1], 30, (p, i) => `stray-${p}-${i}`);
      await produceTransactions(tx, 0, [10], 'tx-stray');
      await stableAt(d.rt, tx, 0, 88);
      await deleteRecords('primary', plain, 0, 165);
      await deleteRecords('primary', tx, 0, 80);
      // Applications on the standby write 20 records per plain partition; the standby deletes some of
      // plain-1 before failback mirrors them back: from after the last forward copy (its marker) to 5
      // records into the new ones.
      const lastForward = (await d.rt.offsetMap.latest({ topic: plain, partition: 1 }))!.lastStandby;
      const [standbyBefore] = await d.rt.targetReader.offsets(plain, [1]);
      expect(standbyBefore!.lastStable).toBe(lastForward + 2);
      await producePlain('standby', plain, 0, 20, 'after-0');
      await producePlain('standby', plain, 1, 20, 'after-1');
      await deleteRecords('standby', plain, 1, lastForward + 7);

      const failback = await runKdr(['failback', '--json'], { env: d.env });
      expect(failback.exitCode, failback.stderr.slice(-2000)).toBe(0);
      const back = JSON.parse(failback.stdout);
      expect(back).toMatchObject({ pair: d.pair, from: 'standby', to: 'primary', epoch: 4 });
      expect((back.exported.gaps as Gap[]).map(gapShape)).toEqual([
        { topic: plain, partition: 0, from: 150, to: 165, count: 15, markersOnly: false },
        { topic: tx, partition: 0, from: 76, to: 80, count: 4, markersOnly: false },
      ]);
      // Exported: what was still there (plain-0 165-179, plain-1 150-179, tx 80-86).
      expect(back.exported.records).toBe(15 + 30 + 7);
      expect(
        (
          back.exported.partitions as {
            topic: string;
            partition: number;
            firstOffset: number;
            lastOffset: number;
          }[]
        )
          .map((p) => [p.topic, p.partition, p.firstOffset, p.lastOffset])
          .sort(),
      ).toEqual(
        [
          [plain, 0, 165, 179],
          [plain, 1, 150, 179],
          [tx, 0, 80, 86],
        ].sort(),
      );
      expect((back.mirroredBackGaps as Gap[]).map(gapShape)).toEqual([
        {
          topic: plain,
          partition: 1,
          from: lastForward + 1,
          to: lastForward + 7,
          count: 6,
          markersOnly: false,
        },
      ]);
      expect(back.mirroredBack).toBe(20 + 15);
      const primaryPlain1 = await readWithKcat('primary', plain, { partition: 1 });
      expect(
        primaryPlain1
          .filter((r) => r.value!.toString().startsWith('after-1-'))
          .map((r) => r.value!.toString()),
      ).toEqual(Array.from({ length: 15 }, (_, i) => `after-1-${i + 5}`));

      const status = JSON.parse((await runKdr(['status', '--json'], { env: d.env })).stdout);
      expect(status.control).toMatchObject({ state: 'MIRRORING', activeCluster: 'primary', epoch: 4 });
      expect(status.history.map((h: { to: string }) => h.to)).toEqual([
        'FAILING_OVER',
        'FAILED_OVER',
        'FAILING_BACK',
        'MIRRORING',
      ]);
    } finally {
      // Whatever failed, the pair is left MIRRORING with the primary active.
      const control = await restoreMirroring(d.rt);
      expect(control).toMatchObject({ state: 'MIRRORING', activeCluster: 'primary' });
    }
  });
});
