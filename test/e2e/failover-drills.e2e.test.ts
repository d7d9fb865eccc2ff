import { afterAll, describe, expect, it } from 'vitest';
import { Lab } from '../../infra/local/lab.ts';
import { loadConfig } from '../../src/config.ts';
import { decodeSegment } from '../../src/core/segment.ts';
import { silentLogger } from '../../src/logger.ts';
import { checkpointDeps } from '../../src/operations.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runCheckpoint } from '../../src/services/checkpoint.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  createTopics,
  type KcatRecord,
  kafkaFor,
  readWithKcat,
  uniqueName,
} from '../helpers/lab.ts';

/**
 * The worst day, end to end through the CLI: the primary's brokers are killed while records are being
 * produced and not yet mirrored; an unplanned failover promotes the standby and reports the RPO; once the
 * primary is back, what was really missing is counted; applications write to the standby; failback
 * exports what the standby never got, mirrors the standby's new records back exactly once, moves the
 * group back, and the forward mirror resumes without copying anything in a cycle.
 */

const lab = new Lab();
const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
  // Whatever happened, the primary must be up for the next test file.
  await lab.startCluster('primary');
});

const srcOf = (r: KcatRecord) => r.headers.find(([k]) => k === 'kdr.src')?.[1]?.toString();
const originOf = (r: KcatRecord) => r.headers.find(([k]) => k === 'kdr.origin')?.[1]?.toString();

describe('failover drills', () => {
  it('unplanned failover with the primary killed, then failback', { timeout: 900_000 }, async () => {
    const pair = uniqueName('drill');
    const topic = uniqueName('drill-t');
    const group = uniqueName('drill-g');
    const env = {
      KDR_PAIR: pair,
      KDR_TOPICS: topic,
      KDR_GROUPS: group,
      KDR_MIRROR_GROUP_ID: uniqueName('drill-mirror'),
    };
    const cfg = loadConfig({ ...process.env, ...env });
    const rt = createRuntime(cfg, silentLogger);
    runtimes.push(rt);
    const partitions = 3;
    await createTopics('primary', [{ topic, numPartitions: partitions }]);
    const producer = kafkaFor('primary').producer({ idempotent: true });
    await producer.connect();
    for (let p = 0; p < partitions; p++) {
      await producer.send({
        topic,
        messages: Array.from({ length: 300 }, (_, i) => ({ partition: p, value: `before-${p}-${i}` })),
      });
    }
    const mirrored = await runKdr(['mirror', '--until-caught-up', '--json'], { env });
    expect(mirrored.exitCode, mirrored.stderr.slice(-1000)).toBe(0);
    const committed = [100, 250, 300];
    await commitGroupOffsets('primary', group, topic, committed);

    // The outage: records keep coming, nothing mirrors them; checkpoints observe the primary until its
    // brokers are killed in the middle of the producer's loop.
    let unmirrored = 0;
    for (let round = 0; ; round++) {
      await producer.send({
        topic,
        messages: Array.from({ length: 20 }, (_, i) => ({
          partition: (round + i) % partitions,
          value: `outage-${round}-${i}`,
        })),
      });
      unmirrored += 20;
      await runCheckpoint(checkpointDeps(rt), { commitOnStandby: false, mirrorGroups: [] });
      if (round === 4) {
        await lab.stopCluster('primary', 'SIGKILL');
        break;
      }
    }
    await producer.disconnect().catch(() => {});

    const failedOver = await runKdr(['failover', '--unplanned', '--json'], { env, timeoutMs: 300_000 });
    expect(failedOver.exitCode, failedOver.stderr.slice(-2000)).toBe(0);
    const report = JSON.parse(failedOver.stdout);
    expect(report).toMatchObject({ pair, mode: 'unplanned', from: 'primary', to: 'standby', epoch: 2 });
    expect(report.rpo.records).toBe(unmirrored);
    expect(report.rpo.seconds).toBeGreaterThan(0);
    // Each group position moved to the standby copy of the record it would have read next (or, past
    // everything mirrored, right after the last mirrored record).
    const standbyBefore = await readWithKcat('standby', topic);
    for (const [partition, offset] of committed.entries()) {
      const copy = standbyBefore.find((r) => srcOf(r) === `primary/${topic}/${partition}/${offset}`);
      const lastCopy = standbyBefore.filter((r) => r.partition === partition && srcOf(r)).at(-1)!;
      const move = report.groups[group].find((m: { partition: number }) => m.partition === partition);
      expect(move.standbyOffset, `partition ${partition}`).toBe(copy ? copy.offset : lastCopy.offset + 1);
    }

    // With the primary back: what was really missing is what the report said, partition by partition.
    await lab.startCluster('primary');
    const onPrimary = await readWithKcat('primary', topic);
    const onStandby = new Set((await readWithKcat('standby', topic)).map(srcOf));
    const missing = new Map<number, number>();
    for (const r of onPrimary) {
      if (!onStandby.has(`primary/${topic}/${r.partition}/${r.offset}`))
        missing.set(r.partition, (missing.get(r.partition) ?? 0) + 1);
    }
    for (const p of report.rpo.partitions)
      expect(p.records, `partition ${p.partition}`).toBe(missing.get(p.partition) ?? 0);

    // Applications now write to the standby; the group has read some of it there.
    const standbyProducer = kafkaFor('standby').producer({ idempotent: true });
    await standbyProducer.connect();
    for (let p = 0; p < partitions; p++) {
      await standbyProducer.send({
        topic,
        messages: Array.from({ length: 50 }, (_, i) => ({ partition: p, value: `after-${p}-${i}` })),
      });
    }
    await standbyProducer.disconnect();
    // Partition 0: still inside the records that came from the primary; 1 and 2: inside the new ones.
    const standbyPositions = [200, 310, 340];
    await commitGroupOffsets('standby', group, topic, standbyPositions);

    const failedBack = await runKdr(['failback', '--json'], { env, timeoutMs: 300_000 });
    expect(failedBack.exitCode, failedBack.stderr.slice(-2000)).toBe(0);
    const back = JSON.parse(failedBack.stdout);
    expect(back).toMatchObject({ pair, from: 'standby', to: 'primary', epoch: 4, mirroredBack: 150 });
    // Exported and counted: exactly the outage records, readable from the bucket.
    expect(back.exported.records).toBe(unmirrored);
    expect(back.exported.location).toMatch(
      new RegExp(`^s3://${cfg.bucket}/failback/${pair}/${back.operationId}/manifest.json$`),
    );
    const exportedValues: string[] = [];
    for (const part of back.exported.partitions) {
      for (const object of part.objects) {
        const records = await decodeSegment(await rt.objectStore.get(object.key), object.sha256);
        exportedValues.push(...records.map((r) => r.value!.toString()));
      }
    }
    expect(exportedValues.sort()).toEqual(
      onPrimary
        .map((r) => r.value!.toString())
        .filter((v) => v.startsWith('outage-'))
        .sort(),
    );

    // The standby's new records reached the primary exactly once, as copies from the standby.
    const primaryAfter = await readWithKcat('primary', topic);
    const fromStandby = primaryAfter.filter((r) => originOf(r) === 'standby');
    expect(fromStandby.map((r) => r.value!.toString()).sort()).toEqual(
      Array.from({ length: partitions }, (_, p) => Array.from({ length: 50 }, (_, i) => `after-${p}-${i}`))
        .flat()
        .sort(),
    );

    // The group moved back to the primary copy of the record it would have read next on the standby:
    // partition 0 to an original primary record, 1 and 2 into the copies of the standby's records.
    const standbyAtFailback = await readWithKcat('standby', topic);
    const moves = back.groups[group] as { partition: number; standbyOffset: number }[];
    for (const [partition, position] of standbyPositions.entries()) {
      const next = standbyAtFailback.find((r) => r.partition === partition && r.offset >= position)!;
      const onPrimaryCopy = primaryAfter.find(
        (r) => r.partition === partition && r.value!.equals(next.value!),
      )!;
      expect(moves.find((m) => m.partition === partition)!.standbyOffset, `partition ${partition}`).toBe(
        onPrimaryCopy.offset,
      );
    }
    // Partitions 1 and 2 go into the copies, after the outage records: the report names them, exactly;
    // partition 0 goes before them (the group reads them).
    for (const partition of [1, 2]) {
      const outage = onPrimary
        .filter((r) => r.partition === partition && r.value!.toString().startsWith('outage-'))
        .map((r) => r.offset);
      const unread = back.unread.filter(
        (u: { group: string; partition: number }) => u.group === group && u.partition === partition,
      );
      expect(unread, `partition ${partition}`).toHaveLength(1);
      expect(unread[0].from).toBe(Math.min(...outage));
      expect(unread[0].to).toBe(Math.max(...outage));
    }
    expect(back.unread.filter((u: { partition: number }) => u.partition === 0)).toEqual([]);
    expect(standbyAtFailback.find((r) => r.partition === 0 && r.offset >= 200)!.value!.toString()).toMatch(
      /^before-0-/,
    );
    expect(standbyAtFailback.find((r) => r.partition === 2 && r.offset >= 340)!.value!.toString()).toMatch(
      /^after-2-/,
    );

    // The forward mirror resumes: the outage records reach the standby now; the records that came from
    // the standby are not copied there again.
    const resumed = await runKdr(['mirror', '--until-caught-up', '--json'], { env });
    expect(resumed.exitCode, resumed.stderr.slice(-1000)).toBe(0);
    const standbyFinal = await readWithKcat('standby', topic);
    expect(standbyFinal.filter((r) => r.value!.toString().startsWith('after-'))).toHaveLength(150);
    expect(standbyFinal.filter((r) => r.value!.toString().startsWith('outage-'))).toHaveLength(unmirrored);
    const status = JSON.parse((await runKdr(['status', '--json'], { env })).stdout);
    expect(status.control).toMatchObject({ state: 'MIRRORING', activeCluster: 'primary', epoch: 4 });
    expect(status.history.map((h: { to: string }) => h.to)).toEqual([
      'FAILING_OVER',
      'FAILED_OVER',
      'FAILING_BACK',
      'MIRRORING',
    ]);
  });
});
