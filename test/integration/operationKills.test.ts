import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { createAwsClients, destroyAwsClients } from '../../src/adapters/aws/clients.ts';
import { FAILBACK_PHASES, FAILOVER_PHASES } from '../../src/core/operation.ts';
import { commitGroupOffsets, config, createTopics, kafkaFor } from '../helpers/lab.ts';
import { copiesOn, describeGroup, kdrJson, killAtPhase, ownDrillPair } from '../helpers/operations.ts';

/**
 * A failover or failback killed (SIGKILL of its process group) in each of its phases, then the same
 * command run again, or --abort: it completes (or returns to the stable state), no record is lost or
 * doubled, and every group lands exactly where Kafka's own ConsumerGroupCommand says it should.
 */

const PER_PARTITION = 60;
/** Where the group stopped on the primary, per partition (one beyond what exists: caught up). */
const COMMITTED = [20, PER_PARTITION];

async function produce(cluster: 'primary' | 'standby', topic: string, prefix: string, n: number) {
  const producer = kafkaFor(cluster).producer({ idempotent: true });
  await producer.connect();
  for (const partition of [0, 1])
    await producer.send({
      topic,
      messages: Array.from({ length: n }, (_, i) => ({ partition, value: `${prefix}-${partition}-${i}` })),
    });
  await producer.disconnect();
}

/** Each primary offset 0..n-1 is on the standby exactly once, in order. */
async function expectMirroredOnce(topic: string, n: number) {
  for (const partition of [0, 1]) {
    const srcs = (await copiesOn('standby', topic, partition)).map((c) => c.src);
    expect(srcs, `standby ${topic}-${partition}`).toEqual(Array.from({ length: n }, (_, i) => i));
  }
}

/** The group's standby position holds the record after its last committed one on the primary. */
async function expectGroupExact(topic: string, group: string) {
  const positions = await describeGroup('standby', group, topic);
  for (const partition of [0, 1]) {
    const copies = await copiesOn('standby', topic, partition);
    const at = positions.get(partition);
    expect(at, `${group} on standby ${topic}-${partition}`).toBeDefined();
    const next = copies.find((c) => c.offset >= at!);
    if (COMMITTED[partition]! < PER_PARTITION) expect(next?.src).toBe(COMMITTED[partition]);
    // Caught up: right after the last mirrored record, nothing of it skipped.
    else expect(copies.filter((c) => c.offset >= at!)).toEqual([]);
  }
}

async function primaryWithGroup(prefix: string) {
  const d = ownDrillPair(prefix);
  await createTopics('primary', [{ topic: d.topic, numPartitions: 2 }]);
  await produce('primary', d.topic, 'p', PER_PARTITION);
  await commitGroupOffsets('primary', d.group, d.topic, COMMITTED);
  return d;
}

/** Each phase as it begins, and as it ends: its work done, not yet marked done (`after:<phase>`). */
const killPoints = (phases: readonly string[]) => [
  ...phases.filter((p) => p !== 'done'),
  ...phases.filter((p) => p !== 'done').map((p) => `after:${p}`),
];

describe('a failover killed in any phase', () => {
  const phases = FAILOVER_PHASES.planned.filter((p) => p !== 'done');

  it.each(killPoints(phases))(
    'planned, killed at %s: the same command again completes it exactly',
    async (point) => {
      const phase = point.replace('after:', '');
      const d = await primaryWithGroup(`kill-fo-${phase}`);
      await killAtPhase(['failover', '--planned', '--timeout', '60'], point, d.env);
      const status = await kdrJson(['status'], d.env);
      expect(status.json.operation).toMatchObject({ kind: 'failover', phase, outcome: 'in-progress' });
      expect(status.json.control.state).toBe(phase === 'stop-mirror' ? 'FAILED_OVER' : 'FAILING_OVER');

      const again = await kdrJson(['failover', '--planned', '--timeout', '60'], d.env);
      expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
      expect(again.json.operationId).toBe(status.json.operation.id);
      expect(again.json.rpo).toMatchObject({ records: 0, known: true });
      expect((await kdrJson(['status'], d.env)).json.control.state).toBe('FAILED_OVER');
      await expectMirroredOnce(d.topic, PER_PARTITION);
      await expectGroupExact(d.topic, d.group);
    },
  );

  it.each(phases.filter((p) => p !== 'stop-mirror'))(
    'planned, killed in %s: --abort returns the pair to MIRRORING, and a new failover is exact',
    async (phase) => {
      const d = await primaryWithGroup(`abort-fo-${phase}`);
      await killAtPhase(['failover', '--planned', '--timeout', '60'], phase, d.env);
      const abort = await kdrJson(['failover', '--abort'], d.env);
      expect(abort.exitCode, abort.stderr).toBe(0);
      expect(abort.json).toMatchObject({ phase, state: 'MIRRORING' });
      // The mirror takes its partitions back; nothing is doubled by the aborted drain.
      const mirror = await kdrJson(['mirror', '--until-caught-up'], d.env);
      expect(mirror.exitCode, mirror.stderr.slice(-2000)).toBe(0);
      const fo = await kdrJson(['failover', '--planned', '--timeout', '60'], d.env);
      expect(fo.exitCode, fo.stderr.slice(-2000)).toBe(0);
      expect(fo.json.operationId).not.toBe(abort.json.operationId);
      await expectMirroredOnce(d.topic, PER_PARTITION);
      await expectGroupExact(d.topic, d.group);
    },
  );

  it('after the standby became active, --abort is refused and says how to go on', async () => {
    const d = await primaryWithGroup('abort-late');
    await killAtPhase(['failover', '--planned', '--timeout', '60'], 'stop-mirror', d.env);
    const abort = await kdrJson(['failover', '--abort'], d.env);
    expect(abort.exitCode).toBe(5);
    expect(abort.stderr).toMatch(/already made the standby active.*kdr failover. again to finish it/);
    const again = await kdrJson(['failover'], d.env);
    expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
    await expectGroupExact(d.topic, d.group);
  });

  it('unplanned, killed in each phase: resumed to the same exact result', async () => {
    const d = await primaryWithGroup('kill-fo-unplanned');
    const mirror = await kdrJson(['mirror', '--until-caught-up'], d.env);
    expect(mirror.exitCode, mirror.stderr).toBe(0);
    const cp = await kdrJson(['checkpoint'], d.env);
    expect(cp.exitCode, cp.stderr).toBe(0);
    let id: string | undefined;
    for (const phase of FAILOVER_PHASES.unplanned.filter((p) => p !== 'done')) {
      await killAtPhase(['failover', '--unplanned'], phase, d.env);
      const status = await kdrJson(['status'], d.env);
      expect(status.json.operation).toMatchObject({ phase, mode: 'unplanned', outcome: 'in-progress' });
      id ??= status.json.operation.id;
      expect(status.json.operation.id).toBe(id);
    }
    const done = await kdrJson(['failover', '--unplanned'], d.env);
    expect(done.exitCode, done.stderr.slice(-2000)).toBe(0);
    expect(done.json.operationId).toBe(id);
    expect(done.json.rpo.known).toBe(false);
    await expectMirroredOnce(d.topic, PER_PARTITION);
    await expectGroupExact(d.topic, d.group);
  });
});

describe('a failback killed in any phase', () => {
  it.each(killPoints(FAILBACK_PHASES))(
    'killed at %s: the same command again completes it; every standby record reaches the primary once',
    async (point) => {
      const phase = point.replace('after:', '');
      const d = await primaryWithGroup(`kill-fb-${phase}`);
      const fo = await kdrJson(['failover', '--planned', '--timeout', '60'], d.env);
      expect(fo.exitCode, fo.stderr.slice(-2000)).toBe(0);
      // Applications on the standby: 15 new records per partition, the group reads 10 of them.
      await produce('standby', d.topic, 's', 15);
      const originalsOf = async (partition: number) =>
        (await copiesOn('standby', d.topic, partition)).filter((c) => c.src === null).map((c) => c.offset);
      const tenth = await Promise.all([0, 1].map(async (p) => (await originalsOf(p))[10]!));
      await commitGroupOffsets('standby', d.group, d.topic, tenth);
      await killAtPhase(['failback', '--timeout', '60'], point, d.env);
      const status = await kdrJson(['status'], d.env);
      expect(status.json.operation).toMatchObject({ kind: 'failback', phase, outcome: 'in-progress' });

      const again = await kdrJson(['failback', '--timeout', '60'], d.env);
      expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
      expect(again.json.operationId).toBe(status.json.operation.id);
      expect((await kdrJson(['status'], d.env)).json.control.state).toBe('MIRRORING');
      const primaryPositions = await describeGroup('primary', d.group, d.topic);
      for (const partition of [0, 1]) {
        const onPrimary = await copiesOn('primary', d.topic, partition);
        // The primary's own records, then each standby original exactly once.
        const back = onPrimary.filter((c) => c.src !== null).map((c) => c.src);
        const originals = await originalsOf(partition);
        expect(back, `${d.topic}-${partition} mirrored back`).toEqual(originals);
        expect(originals).toHaveLength(15);
        // The group read 10 of the 15 on the standby: it resumes at the copy of the 11th.
        const at = primaryPositions.get(partition)!;
        const next = onPrimary.find((c) => c.offset >= at);
        expect(next?.src, `${d.group} on primary ${d.topic}-${partition}`).toBe(originals[10]);
      }
    },
  );

  it('killed before its flip, --abort returns to FAILED_OVER; after it, --abort is refused', async () => {
    const d = await primaryWithGroup('abort-fb');
    const fo = await kdrJson(['failover', '--planned', '--timeout', '60'], d.env);
    expect(fo.exitCode, fo.stderr.slice(-2000)).toBe(0);
    await produce('standby', d.topic, 's', 5);
    await killAtPhase(['failback', '--timeout', '60'], 'groups', d.env);
    const abort = await kdrJson(['failback', '--abort'], d.env);
    expect(abort.exitCode, abort.stderr).toBe(0);
    expect(abort.json).toMatchObject({ phase: 'groups', state: 'FAILED_OVER' });
    await killAtPhase(['failback', '--timeout', '60'], 'late-writes', d.env);
    const refused = await kdrJson(['failback', '--abort'], d.env);
    expect(refused.exitCode).toBe(5);
    expect(refused.stderr).toMatch(/already made the primary active again/);
    const done = await kdrJson(['failback', '--timeout', '60'], d.env);
    expect(done.exitCode, done.stderr.slice(-2000)).toBe(0);
    for (const partition of [0, 1]) {
      const back = (await copiesOn('primary', d.topic, partition)).filter((c) => c.src !== null);
      expect(back).toHaveLength(5);
    }
  });
});

describe('a pair left FAILING_OVER by kdr before operations had phases', () => {
  /** The control item as the previous kdr wrote it when its failover process died in the drain. */
  async function wedge(pair: string) {
    const aws = createAwsClients(config);
    try {
      await aws.dynamodb.send(
        new PutItemCommand({
          TableName: config.stateTable,
          Item: {
            pk: { S: `pair#${pair}` },
            sk: { S: 'control' },
            state: { S: 'FAILING_OVER' },
            active: { S: config.primary.alias },
            epoch: { N: '1' },
            updatedAt: { N: String(Date.now()) },
            reason: { S: 'planned failover' },
            operation: {
              S: JSON.stringify({
                kind: 'failover',
                mode: 'planned',
                startedAt: Date.now(),
                owner: 'elsewhere/1',
              }),
            },
          },
        }),
      );
    } finally {
      destroyAwsClients(aws);
    }
  }

  it('is completed by running the failover again, or returned to MIRRORING by --abort', async () => {
    const d = await primaryWithGroup('legacy');
    await wedge(d.env.KDR_PAIR);
    const again = await kdrJson(['failover', '--planned', '--timeout', '60'], d.env);
    expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
    expect(again.json.operationId).toMatch(/^legacy-/);
    await expectMirroredOnce(d.topic, PER_PARTITION);
    await expectGroupExact(d.topic, d.group);

    const other = await primaryWithGroup('legacy-abort');
    await wedge(other.env.KDR_PAIR);
    const abort = await kdrJson(['failover', '--abort'], other.env);
    expect(abort.exitCode, abort.stderr).toBe(0);
    expect(abort.json).toMatchObject({ state: 'MIRRORING', epoch: 2 });
  });
});
