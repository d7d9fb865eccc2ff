import { afterAll, describe, expect, it } from 'vitest';
import { handler as failbackHandler } from '../../functions/failback.ts';
import { handler as failoverHandler } from '../../functions/failover.ts';
import { loadConfig } from '../../src/config.ts';
import type { SourceRecord } from '../../src/core/records.ts';
import { EventError } from '../../src/errors.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  config,
  createTopics,
  eventually,
  KAFKA_TOOLS,
  kafkaFor,
  kafkaTool,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import { mirroredSourceOffsets } from '../helpers/records.ts';

/**
 * Failover drills against the lab. Each test has a pair of its own (KDR_PAIR), so its control state,
 * offset map and transactional ids are its own.
 */

const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

function drill(prefix: string) {
  const pair = uniqueName(prefix);
  const topic = uniqueName(`${prefix}-t`);
  const group = uniqueName(`${prefix}-g`);
  const env = { KDR_PAIR: pair, KDR_TOPICS: topic, KDR_GROUPS: group };
  const cfg = loadConfig({ ...process.env, ...env });
  const runtime = () => {
    const rt = createRuntime(cfg, silentLogger);
    runtimes.push(rt);
    return rt;
  };
  return { pair, topic, group, env, cfg, runtime };
}

async function produceNumbered(topic: string, partitions: number, perPartition: number) {
  const producer = kafkaFor('primary').producer({ idempotent: true });
  await producer.connect();
  for (let p = 0; p < partitions; p++) {
    await producer.send({
      topic,
      messages: Array.from({ length: perPartition }, (_, i) => ({
        partition: p,
        key: `k${i}`,
        value: `p${p}-r${i}`,
      })),
    });
  }
  await producer.disconnect();
}

async function mirrorAll(rt: Runtime, topic: string, partitions: number) {
  for (let partition = 0; partition < partitions; partition++) {
    const tp = { topic, partition };
    const [o] = await rt.sourceReader.offsets(topic, [partition]);
    const records: SourceRecord[] = [];
    for await (const batch of rt.sourceReader.readRange(tp, o!.logStart, o!.lastStable))
      records.push(...batch);
    await rt.engine.mirrorBatch(tp, records);
  }
}

/** What a consumer of `group` reads on the standby until it reaches the end: source offsets per partition. */
async function consumeOnStandby(
  topic: string,
  group: string,
  expected: number,
): Promise<Map<number, number[]>> {
  const consumer = kafkaFor('standby').consumer({ groupId: group });
  const seen = new Map<number, number[]>();
  let count = 0;
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const src = message.headers?.['kdr.src']?.toString() ?? '';
        seen.set(partition, [...(seen.get(partition) ?? []), Number(src.split('/')[3])]);
        count++;
      },
    });
    await eventually(`${expected} records read on the standby`, () => count >= expected, 60_000);
    // Give a re-delivery or an extra record the chance to show up before stopping.
    await new Promise((r) => setTimeout(r, 1500));
  } finally {
    await consumer.disconnect();
  }
  return seen;
}

describe('failover', () => {
  it('planned: the group resumes on the standby with exactly the records it had not consumed', async () => {
    const d = drill('planned');
    const partitions = 4;
    await createTopics('primary', [{ topic: d.topic, numPartitions: partitions }]);
    await produceNumbered(d.topic, partitions, 250);
    const rt = d.runtime();
    await mirrorAll(rt, d.topic, partitions);
    // More records after the last mirror pass: the planned failover must drain them itself.
    await produceNumbered(d.topic, partitions, 50);
    const committed = [17, 0, 150, 300];
    await commitGroupOffsets('primary', d.group, d.topic, committed);

    const result = await runKdr(['failover', '--planned', '--timeout', '60', '--json'], { env: d.env });
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ pair: d.pair, mode: 'planned', from: 'primary', to: 'standby', epoch: 2 });
    expect(report.rpo.records).toBe(0);
    expect(report.rtoMs).toBeGreaterThan(0);
    expect(report.groups[d.group]).toHaveLength(partitions);

    // Every record was mirrored, and the group reads on the standby exactly what it had not consumed.
    for (let p = 0; p < partitions; p++) {
      expect(await mirroredSourceOffsets(d.topic, p)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    }
    const read = await consumeOnStandby(
      d.topic,
      d.group,
      committed.reduce((n, c) => n + (300 - c), 0),
    );
    for (let p = 0; p < partitions; p++) {
      expect(read.get(p) ?? [], `partition ${p}`).toEqual(
        Array.from({ length: 300 - committed[p]! }, (_, i) => committed[p]! + i),
      );
    }
    // Kafka's own tool agrees on the group's position... which the consumer has now moved to the end.
    const described = await kafkaTool(KAFKA_TOOLS.consumerGroups, [
      '--bootstrap-server',
      config.standby.brokers[0]!,
      '--describe',
      '--group',
      d.group,
    ]);
    expect(described.stdout).toContain(d.topic);

    const status = JSON.parse((await runKdr(['status', '--json'], { env: d.env })).stdout);
    expect(status.control).toMatchObject({ state: 'FAILED_OVER', activeCluster: 'standby', epoch: 2 });
    expect(status.history.map((h: { to: string }) => h.to)).toEqual(['FAILING_OVER', 'FAILED_OVER']);

    // The mirror refuses to write now, and writes nothing.
    await produceNumbered(d.topic, 1, 1);
    const tp = { topic: d.topic, partition: 0 };
    const [o] = await rt.sourceReader.offsets(d.topic, [0]);
    const fresh = d.runtime();
    const late: SourceRecord[] = [];
    for await (const batch of fresh.sourceReader.readRange(tp, 300, o!.lastStable)) late.push(...batch);
    await expect(fresh.engine.mirrorBatch(tp, late)).rejects.toMatchObject({ code: 'NOT_MIRRORING' });
    expect(await mirroredSourceOffsets(d.topic, 0)).toHaveLength(300);
  });

  it('planned: aborts back to MIRRORING when lag cannot reach zero in time', async () => {
    const d = drill('abort');
    await createTopics('primary', [{ topic: d.topic, numPartitions: 1 }]);
    await produceNumbered(d.topic, 1, 20_000);
    const result = await runKdr(['failover', '--planned', '--timeout', '0.001', '--json'], { env: d.env });
    expect(result.exitCode).toBe(8);
    expect(result.stderr).toContain(
      `failover aborted, pair ${d.pair} is back to MIRRORING: mirror lag did not reach zero`,
    );
    const control = await d.runtime().stateStore.getControl();
    expect(control).toMatchObject({ state: 'MIRRORING', epoch: 2 });
  });

  it('lets exactly one of 10 concurrent failovers win; the others name the epoch', async () => {
    const d = drill('race');
    await createTopics('primary', [{ topic: d.topic, numPartitions: 2 }]);
    await produceNumbered(d.topic, 2, 100);
    await mirrorAll(d.runtime(), d.topic, 2);
    const results = await Promise.all(
      Array.from({ length: 10 }, () => runKdr(['failover', '--planned', '--json'], { env: d.env })),
    );
    const winners = results.filter((r) => r.exitCode === 0);
    expect(winners, results.map((r) => r.stderr).join('\n')).toHaveLength(1);
    for (const loser of results.filter((r) => r.exitCode !== 0)) {
      expect(loser.exitCode).toBe(5);
      expect(loser.stderr).toMatch(
        new RegExp(
          `pair ${d.pair} is (already failing over \\(epoch 1\\)|FAILED_OVER with standby active \\(epoch 2\\))`,
        ),
      );
    }
    const rt = d.runtime();
    expect(await rt.stateStore.getControl()).toMatchObject({
      state: 'FAILED_OVER',
      epoch: 2,
      activeCluster: 'standby',
    });
    expect((await rt.stateStore.history()).map((h) => h.epoch)).toEqual([1, 2]);
  });

  it('checkpoints group offsets, and commits them on the standby for groups empty there when asked', async () => {
    const d = drill('ckpt');
    await createTopics('primary', [{ topic: d.topic, numPartitions: 2 }]);
    await produceNumbered(d.topic, 2, 30);
    await mirrorAll(d.runtime(), d.topic, 2);
    await commitGroupOffsets('primary', d.group, d.topic, [10, 30]);
    const result = await runKdr(['checkpoint', '--commit-on-standby', '--json'], { env: d.env });
    expect(result.exitCode, result.stderr).toBe(0);
    const checkpoint = JSON.parse(result.stdout);
    expect(checkpoint.committedOnStandby).toEqual([d.group]);
    const byPartition = new Map(
      checkpoint.checkpoints.map((c: { partition: number; standbyOffset: number | null }) => [
        c.partition,
        c.standbyOffset,
      ]),
    );
    expect(byPartition.get(0)).toBe(10);
    expect(byPartition.get(1)).toBeNull(); // committed at the end: nothing at or after it is mirrored yet
    const onStandby = await withAdmin('standby', (admin) =>
      admin.fetchOffsets({ groupId: d.group, topics: [d.topic] }),
    );
    expect(onStandby[0]!.partitions.find((p) => p.partition === 0)!.offset).toBe('10');
    const status = JSON.parse((await runKdr(['status', '--json'], { env: d.env })).stdout);
    expect(status.checkpoint.groups).toBe(1);
    // The status shows this very checkpoint, and its age (no bound on it: that would be a timing test).
    expect(status.checkpoint.at).toBe(checkpoint.at);
    expect(status.checkpoint.ageSeconds).toBeGreaterThanOrEqual(0);
  });

  it('rejects bad input with a clear error and changes no state', async () => {
    const d = drill('badinput');
    const before = await createRuntime(config, silentLogger).stateStore.getControl();
    expect(before.epoch).toBe(0);
    const invalid: [unknown, string][] = [
      [{ mode: 'sideways' }, 'expected "planned" or "unplanned", got "sideways"'],
      ['{"mode": planned', 'not JSON'],
      [{ pair: 'someone-else' }, 'request is for pair "someone-else"'],
      [{ timeoutSeconds: -5 }, 'expected more than 0 seconds, got -5'],
      [{ timeoutSeconds: 'soon' }, 'expected a number of seconds, got "soon"'],
      [{ mode: 'planned', force: true }, 'force'],
    ];
    for (const [payload, message] of invalid) {
      const error = await failoverHandler(payload).catch((e: unknown) => e);
      expect(error, JSON.stringify(payload)).toBeInstanceOf(EventError);
      expect((error as Error).message).toContain(message);
    }
    for (const [args, message] of [
      [['--timeout', '-1'], 'expected seconds, more than 0 and at most 3600, got "-1"'],
      [['--planned', '--unplanned'], "option '--planned' cannot be used with option '--unplanned'"],
      [['--mode', 'x'], "unknown option '--mode'"],
    ] as const) {
      const result = await runKdr(['failover', ...args], { env: d.env });
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(message);
    }
    for (const [payload, message] of [
      [{ timeoutSeconds: 0 }, 'expected more than 0 seconds, got 0'],
      [{ mode: 'planned' }, 'mode'],
      ['[1, 2', 'not JSON'],
      [{ pair: 'x' }, 'request is for pair "x"'],
    ] as const) {
      const error = await failbackHandler(payload).catch((e: unknown) => e);
      expect(error, JSON.stringify(payload)).toBeInstanceOf(EventError);
      expect((error as Error).message).toContain(message);
    }
    // A failback of a pair that did not fail over is refused by its state, and changes nothing.
    const notFailedOver = await runKdr(['failback', '--json'], { env: d.env });
    expect(notFailedOver.exitCode).toBe(5);
    expect(notFailedOver.stderr).toContain(
      `pair ${d.pair} is MIRRORING with primary active (epoch 0); cannot move to FAILING_BACK`,
    );
    // Neither the drill's pair (CLI) nor the handler's (the default pair) moved.
    for (const rt of [d.runtime(), createRuntime(config, silentLogger)]) {
      runtimes.push(rt);
      expect(await rt.stateStore.getControl()).toMatchObject({ state: 'MIRRORING', epoch: 0 });
      expect(await rt.stateStore.history()).toEqual([]);
    }
  });
});
