import { afterAll, describe, expect, it } from 'vitest';
import { handler } from '../../functions/mirror.ts';
import { Lab } from '../../infra/local/lab.ts';
import { lastHeader, parseSrc, SRC_HEADER } from '../../src/core/provenance.ts';
import type { SourceRecord } from '../../src/core/records.ts';
import { toKafkaEvent } from '../../src/events/kafkaEvent.ts';
import { createLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  config,
  createTopics,
  eventually,
  type KcatRecord,
  kafkaFor,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import { readPartition } from '../helpers/records.ts';

/**
 * Kafka's lifecycle under the mirror: topics deleted and re-created, logs emptied by retention on the
 * standby, records deleted on the source before they were mirrored, gaps between Lambda events, and
 * applications that forward kdr's headers. kcat reads both sides.
 */

const runtimes: Runtime[] = [];
function runtime(): Runtime {
  const rt = createRuntime(config, createLogger('error'));
  runtimes.push(rt);
  return rt;
}
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

const values = (records: KcatRecord[]) => records.map((r) => r.value?.toString() ?? null);

async function produce(
  topic: string,
  items: { value: string; headers?: Record<string, string>; partition?: number }[],
  cluster: 'primary' | 'standby' = 'primary',
): Promise<void> {
  const producer = kafkaFor(cluster).producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic,
      messages: items.map((m) => ({ partition: m.partition ?? 0, value: m.value, headers: m.headers ?? {} })),
    });
  } finally {
    await producer.disconnect();
  }
}

async function mirrorUntilCaughtUp(topic: string, env: Record<string, string> = {}) {
  const result = await runKdr(['mirror', '--topics', topic, '--until-caught-up', '--json'], { env });
  expect(result.exitCode, result.stderr).toBe(0);
  return result;
}

async function statusOf(topic: string, env: Record<string, string> = {}) {
  const result = await runKdr(['status', '--json'], { env: { KDR_TOPICS: topic, ...env } });
  expect(result.exitCode, result.stderr).toBe(0);
  return JSON.parse(result.stdout).partitions.filter((p: { topic: string }) => p.topic === topic);
}

async function deleteTopic(topic: string): Promise<void> {
  await withAdmin('primary', async (admin) => {
    await admin.deleteTopics({ topics: [topic] });
  });
  await eventually(`${topic} is gone from the primary`, async () =>
    withAdmin('primary', async (admin) => !(await admin.listTopics()).includes(topic)),
  );
}

const srcOffset = (r: KcatRecord) =>
  parseSrc(
    lastHeader(
      r.headers.map(([key, value]) => ({ key, value })),
      SRC_HEADER,
    ),
  )?.offset;

/** `n` records valued `<prefix>-0`, `<prefix>-1`, … */
const numbered = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ value: `${prefix}-${i}` }));

/** Its own pair (control state, checkpoints, offset map): a failover or a checkpoint touches no other test. */
const ownPair = (prefix: string) => ({
  KDR_PAIR: uniqueName(`${prefix}-pair`),
  KDR_MIRROR_GROUP_ID: uniqueName(`${prefix}-mirror`),
});

/** A topic mirrored with `old` records (old-0…), then deleted and re-created with `fresh` (new-0…). */
async function mirroredThenRecreated(
  topic: string,
  old: number,
  fresh: number,
  env: Record<string, string> = {},
) {
  await createTopics('primary', [{ topic, numPartitions: 1 }]);
  await produce(topic, numbered('old', old));
  await mirrorUntilCaughtUp(topic, env);
  await deleteTopic(topic);
  await createTopics('primary', [{ topic, numPartitions: 1 }]);
  await produce(topic, numbered('new', fresh));
}

describe('the mirror through Kafka lifecycle events', () => {
  it('mirrors a deleted and re-created source topic as a new generation, exactly once, and translates it exactly', async () => {
    const topic = uniqueName('recreated');
    await mirroredThenRecreated(topic, 30, 10);
    await mirrorUntilCaughtUp(topic);

    const standby = await readWithKcat('standby', topic);
    expect(values(standby)).toEqual([
      ...Array.from({ length: 30 }, (_, i) => `old-${i}`),
      ...Array.from({ length: 10 }, (_, i) => `new-${i}`),
    ]);
    const [row] = await statusOf(topic);
    expect(row).toMatchObject({ generation: 2, generationPending: false, lastMirrored: 9, lagOffsets: 0 });
    expect(row.generationChanged.reason).toMatch(/source topic was re-created/);
    // Every committed offset of the new topic translates to its own record on the standby.
    const newCopies = standby.slice(30);
    for (let o = 0; o < 10; o++) {
      const t = await runKdr([
        'translate',
        '--topic',
        topic,
        '--partition',
        '0',
        '--offset',
        String(o),
        '--json',
      ]);
      expect(JSON.parse(t.stdout), `offset ${o}`).toMatchObject({
        exact: true,
        generation: 2,
        standbyOffset: newCopies[o]!.offset,
      });
    }
  });

  it('mirrors a re-created topic through the Lambda handler as a new generation', async () => {
    const topic = uniqueName('recreated-lambda');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const rt = runtime();
    const readSource = () => readPartition(rt.sourceReader, { topic, partition: 0 });
    await produce(
      topic,
      Array.from({ length: 20 }, (_, i) => ({ value: `old-${i}` })),
    );
    await handler(toKafkaEvent([{ topic, partition: 0, records: await readSource() }]));
    await deleteTopic(topic);
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(
      topic,
      Array.from({ length: 5 }, (_, i) => ({ value: `new-${i}` })),
    );
    // The same warm container: its writer of the old topic is still open.
    const result = await handler(toKafkaEvent([{ topic, partition: 0, records: await readSource() }]));
    expect(result.recordsMirrored).toBe(5);
    expect(values(await readWithKcat('standby', topic))).toEqual([
      ...Array.from({ length: 20 }, (_, i) => `old-${i}`),
      ...Array.from({ length: 5 }, (_, i) => `new-${i}`),
    ]);
    const [row] = await statusOf(topic);
    expect(row).toMatchObject({ generation: 2, lastMirrored: 4, lagOffsets: 0 });
  });

  it('mirrors a re-created topic whose first event starts past the old topic (a warm writer and event source position)', async () => {
    const topic = uniqueName('recreated-warm');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const rt = runtime();
    const readSource = () => readPartition(rt.sourceReader, { topic, partition: 0 });
    await produce(
      topic,
      Array.from({ length: 20 }, (_, i) => ({ value: `old-${i}` })),
    );
    await handler(toKafkaEvent([{ topic, partition: 0, records: await readSource() }]));
    await deleteTopic(topic);
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(
      topic,
      Array.from({ length: 30 }, (_, i) => ({ value: `new-${i}` })),
    );
    // The event source kept its position: the next event starts at 20, past everything the old topic had.
    const result = await handler(
      toKafkaEvent([{ topic, partition: 0, records: (await readSource()).slice(20) }]),
    );
    expect(result.recordsMirrored).toBe(30);
    expect(values(await readWithKcat('standby', topic))).toEqual([
      ...Array.from({ length: 20 }, (_, i) => `old-${i}`),
      ...Array.from({ length: 30 }, (_, i) => `new-${i}`),
    ]);
    const [row] = await statusOf(topic);
    expect(row).toMatchObject({ generation: 2, lastMirrored: 29, lagOffsets: 0 });
  });

  it('mirrors the writes after kdr restore --target primary --mode replace (a re-created topic)', async () => {
    const topic = uniqueName('replaced');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(
      topic,
      Array.from({ length: 15 }, (_, i) => ({ value: `v${i}` })),
    );
    await mirrorUntilCaughtUp(topic);
    const snapshot = await runKdr(['snapshot', '--topics', topic, '--json']);
    expect(snapshot.exitCode, snapshot.stderr).toBe(0);
    const { snapshotId } = JSON.parse(snapshot.stdout);
    const restored = await runKdr([
      'restore',
      '--snapshot',
      snapshotId,
      '--topics',
      topic,
      '--target',
      'primary',
      '--mode',
      'replace',
      '--no-safety-snapshot',
      '--yes',
      '--json',
    ]);
    expect(restored.exitCode, restored.stderr).toBe(0);
    await produce(
      topic,
      Array.from({ length: 5 }, (_, i) => ({ value: `after-${i}` })),
    );
    await mirrorUntilCaughtUp(topic);
    const standby = values(await readWithKcat('standby', topic));
    // The restored topic is a new generation: its records (the restored ones, then the new writes) all
    // follow what the standby had, each once.
    expect(standby).toEqual([
      ...Array.from({ length: 15 }, (_, i) => `v${i}`),
      ...Array.from({ length: 15 }, (_, i) => `v${i}`),
      ...Array.from({ length: 5 }, (_, i) => `after-${i}`),
    ]);
    const [row] = await statusOf(topic);
    expect(row).toMatchObject({ generation: 2, lagOffsets: 0 });
    // Every offset of the restored topic translates to the copy of the first record at or after it.
    const copies = (await readWithKcat('standby', topic)).slice(15);
    const end = (await runtime().sourceReader.offsets(topic))[0]!.lastStable;
    for (let o = 0; o < end; o++) {
      const next = copies.find((c) => srcOffset(c)! >= o)!;
      const t = await runKdr([
        'translate',
        '--topic',
        topic,
        '--partition',
        '0',
        '--offset',
        String(o),
        '--json',
      ]);
      expect(JSON.parse(t.stdout), `offset ${o}`).toMatchObject({ exact: true, standbyOffset: next.offset });
    }
  });

  it('detects a standby topic re-created under the mirror and mirrors the source into it again', async () => {
    const topic = uniqueName('standby-recreated');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(
      topic,
      Array.from({ length: 10 }, (_, i) => ({ value: `v${i}` })),
    );
    await mirrorUntilCaughtUp(topic);
    await withAdmin('standby', async (admin) => {
      await admin.deleteTopics({ topics: [topic] });
    });
    await eventually(`${topic} is gone from the standby`, async () =>
      withAdmin('standby', async (admin) => !(await admin.listTopics()).includes(topic)),
    );
    await produce(topic, [{ value: 'v10' }]);
    // Topic sync creates the standby topic again; the mirror sees its new id and starts over on it.
    await mirrorUntilCaughtUp(topic);
    expect(values(await readWithKcat('standby', topic))).toEqual(
      Array.from({ length: 11 }, (_, i) => `v${i}`),
    );
    const [row] = await statusOf(topic);
    expect(row).toMatchObject({ generation: 2, lastMirrored: 10, lagOffsets: 0 });
    expect(row.generationChanged.reason).toMatch(/standby topic was re-created/);
  });

  it('does not translate a re-created topic through the old topic before the mirror has seen it', async () => {
    const topic = uniqueName('pending');
    // Its own pair: the checkpoint below writes the pair's checkpoint set.
    const env = ownPair('pending');
    await mirroredThenRecreated(topic, 20, 2, env);
    const t = await runKdr(['translate', '--topic', topic, '--partition', '0', '--offset', '1', '--json'], {
      env,
    });
    expect(JSON.parse(t.stdout)).toMatchObject({ exact: false, generation: null });
    const [row] = await statusOf(topic, env);
    expect(row.generationPending).toBe(true);
    // A group on the new topic: its checkpoint is not a translation through the old topic's records.
    const group = uniqueName('pending-g');
    await commitGroupOffsets('primary', group, topic, [1]);
    const checkpoint = await runKdr(['checkpoint', '--json'], {
      env: { ...env, KDR_TOPICS: topic, KDR_GROUPS: group },
    });
    expect(checkpoint.exitCode, checkpoint.stderr).toBe(0);
    expect(JSON.parse(checkpoint.stdout).checkpoints).toEqual([
      expect.objectContaining({ group, topic, partition: 0, sourceOffset: 1, standbyOffset: null }),
    ]);
  });

  it('keeps mirroring an idle topic whose standby log expired, through the CLI and the Lambda handler', async () => {
    const cli = uniqueName('idle-cli');
    const lambda = uniqueName('idle-lambda');
    // Recent timestamps: the standby copies retention.ms, so its log expires seconds after the last write.
    const retention = [{ name: 'retention.ms', value: '10000' }];
    await createTopics('primary', [
      { topic: cli, numPartitions: 1, configEntries: retention },
      { topic: lambda, numPartitions: 1, configEntries: retention },
    ]);
    await produce(cli, [{ value: 'a' }, { value: 'b' }]);
    await produce(lambda, [{ value: 'a' }, { value: 'b' }]);
    await mirrorUntilCaughtUp(`${cli}|${lambda}`);
    const rt = runtime();
    for (const topic of [cli, lambda]) expect(await readWithKcat('standby', topic)).toHaveLength(2);
    await eventually(
      'both standby logs expired (log start = end)',
      async () => {
        const all = [...(await rt.targetReader.offsets(cli)), ...(await rt.targetReader.offsets(lambda))];
        return all.every((o) => o.logStart === o.highWatermark && o.logStart > 0);
      },
      120_000,
    );
    await produce(cli, [{ value: 'c' }]);
    await produce(lambda, [{ value: 'c' }]);
    await mirrorUntilCaughtUp(cli);
    expect(values(await readWithKcat('standby', cli))).toEqual(['c']);
    // The handler's first batch of this partition: it recovers from an expired standby log.
    const [c] = await rt.sourceReader.fetch({ topic: lambda, partition: 0 }, 2).then((f) => f.records);
    const result = await handler(toKafkaEvent([{ topic: lambda, partition: 0, records: [c!] }]));
    expect(result.recordsMirrored).toBe(1);
    expect(values(await readWithKcat('standby', lambda))).toEqual(['c']);
  });

  it('fills a gap between two Lambda events from the source instead of skipping it', async () => {
    const topic = uniqueName('lambda-gap');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(
      topic,
      Array.from({ length: 200 }, (_, i) => ({ value: `v${i}` })),
    );
    const rt = runtime();
    const all: SourceRecord[] = [];
    for await (const batch of rt.sourceReader.readRange({ topic, partition: 0 }, 0, 200)) all.push(...batch);
    await handler(toKafkaEvent([{ topic, partition: 0, records: all.slice(0, 50) }]));
    // The event source moved on (a reset, a batch it gave up on): the next event starts at 100.
    const second = await handler(toKafkaEvent([{ topic, partition: 0, records: all.slice(100, 200) }]));
    expect(second.recordsMirrored).toBe(150);
    const standby = await readWithKcat('standby', topic);
    expect(standby.map(srcOffset)).toEqual(all.map((r) => r.offset));
  });

  it.each([
    ['plain', false],
    ['transactional', true],
  ])(
    'records %s source offsets deleted before they were mirrored as a gap, and mirrors the rest',
    async (kind, transactional) => {
      const topic = uniqueName(`deleted-${kind}`);
      await createTopics('primary', [{ topic, numPartitions: 1 }]);
      const write = async (from: number, count: number) => {
        const producer = kafkaFor('primary').producer(
          transactional
            ? { transactionalId: uniqueName('deleted-tx'), idempotent: true, maxInFlightRequests: 1 }
            : { idempotent: true },
        );
        await producer.connect();
        const messages = Array.from({ length: count }, (_, i) => ({ partition: 0, value: `v${from + i}` }));
        if (transactional) {
          const tx = await producer.transaction();
          await tx.send({ topic, messages });
          await tx.commit();
        } else {
          await producer.send({ topic, messages });
        }
        await producer.disconnect();
      };
      await write(0, 10);
      await mirrorUntilCaughtUp(topic);
      await write(10, 90);
      const rt = runtime();
      const source = await readWithKcat('primary', topic);
      const cut = source[60]!.offset; // the record v60: everything before it is deleted
      const lastMirrored = source[9]!.offset;
      await withAdmin('primary', async (admin) => {
        await admin.fetchTopicMetadata({ topics: [topic] });
        await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: String(cut) }] });
      });
      expect((await rt.sourceReader.offsets(topic))[0]!.logStart).toBe(cut);
      await mirrorUntilCaughtUp(topic);
      const standby = await readWithKcat('standby', topic);
      expect(values(standby)).toEqual([
        ...Array.from({ length: 10 }, (_, i) => `v${i}`),
        ...Array.from({ length: 40 }, (_, i) => `v${60 + i}`),
      ]);
      const [row] = await statusOf(topic);
      // From the first offset after the last mirrored record (a marker, on a transactional topic) to the cut.
      expect(row.gaps).toEqual([
        expect.objectContaining({
          from: lastMirrored + 1,
          to: cut,
          count: cut - lastMirrored - 1,
          side: 'source',
        }),
      ]);
      // Lag counts offsets: on a transactional topic the last commit marker is one.
      expect(row.lagOffsets).toBe(transactional ? 1 : 0);
    },
  );

  it('mirrors records that carry forwarded kdr headers, and never takes them for copies', async () => {
    const topic = uniqueName('forwarded');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    // What Kafka Streams writes when it forwards the headers of a record it read from a mirrored topic.
    await produce(topic, [
      { value: 'plain-0' },
      { value: 'fwd-origin', headers: { 'kdr.origin': 'standby' } },
      { value: 'fwd-src', headers: { 'kdr.origin': 'standby', 'kdr.src': `standby/${topic}/0/0` } },
      { value: 'fwd-self', headers: { 'kdr.origin': 'primary', 'kdr.src': `primary/${topic}/0/0` } },
      { value: 'plain-1' },
    ]);
    const mirrored = JSON.parse((await mirrorUntilCaughtUp(topic)).stdout);
    expect(mirrored.recordsMirrored).toBe(5);
    const standby = await readWithKcat('standby', topic);
    expect(values(standby)).toEqual(['plain-0', 'fwd-origin', 'fwd-src', 'fwd-self', 'plain-1']);
    expect(standby.map(srcOffset)).toEqual([0, 1, 2, 3, 4]);
  });

  it('brings back through a failover and failback every standby record, forwarded kdr headers or not, with no cycle', async () => {
    const topic = uniqueName('fwd-cycle');
    const env = { ...ownPair('fwd'), KDR_TOPICS: topic, KDR_GROUPS: 'none' };
    const kdr = async (args: string[]) => {
      const result = await runKdr([...args, '--json'], { env });
      expect(result.exitCode, `kdr ${args.join(' ')}: ${result.stderr.slice(-2000)}`).toBe(0);
      return JSON.parse(result.stdout);
    };
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(topic, [
      { value: 'p-0' },
      { value: 'p-fwd', headers: { 'kdr.origin': 'standby', 'kdr.src': `standby/${topic}/0/0` } },
      { value: 'p-1' },
    ]);
    await kdr(['mirror', '--until-caught-up']);
    await kdr(['failover', '--planned']);
    // Applications on the standby, one forwarding the headers of the mirrored record it read.
    await produce(
      topic,
      [
        { value: 's-0' },
        { value: 's-fwd', headers: { 'kdr.origin': 'primary', 'kdr.src': `primary/${topic}/0/0` } },
        { value: 's-1' },
      ],
      'standby',
    );
    await kdr(['failback']);
    const expected = ['p-0', 'p-fwd', 'p-1', 's-0', 's-fwd', 's-1'];
    expect(values(await readWithKcat('primary', topic))).toEqual(expected);
    // Forward again: the records mirrored back are proven copies of the standby's, never sent round.
    await kdr(['mirror', '--until-caught-up']);
    expect(values(await readWithKcat('standby', topic))).toEqual(expected);
    expect(values(await readWithKcat('primary', topic))).toEqual(expected);
  });

  it('drains a re-created topic at a planned failover: its new records reach the standby, RPO 0', async () => {
    const topic = uniqueName('recreated-drain');
    const env = { ...ownPair('drain'), KDR_TOPICS: topic, KDR_GROUPS: 'none' };
    await mirroredThenRecreated(topic, 30, 10, env);
    // No mirror runs: the failover's drain is what copies the new topic's records.
    const failover = await runKdr(['failover', '--planned', '--json'], { env });
    expect(failover.exitCode, failover.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(failover.stdout).rpo).toMatchObject({ records: 0 });
    expect(values(await readWithKcat('standby', topic))).toEqual([
      ...Array.from({ length: 30 }, (_, i) => `old-${i}`),
      ...Array.from({ length: 10 }, (_, i) => `new-${i}`),
    ]);
  });

  it('counts a re-created topic not yet mirrored in the RPO of an unplanned failover', async () => {
    const topic = uniqueName('recreated-rpo');
    const env = { ...ownPair('rpo'), KDR_TOPICS: topic, KDR_GROUPS: 'none' };
    await mirroredThenRecreated(topic, 30, 10, env);
    const checkpoint = await runKdr(['checkpoint', '--json'], { env });
    expect(checkpoint.exitCode, checkpoint.stderr).toBe(0);
    const lab = new Lab();
    await lab.stopCluster('primary');
    try {
      const failover = await runKdr(['failover', '--unplanned', '--json'], { env });
      expect(failover.exitCode, failover.stderr.slice(-2000)).toBe(0);
      // The 10 records of the new topic never reached the standby: the old topic's 30 do not hide them.
      expect(JSON.parse(failover.stdout).rpo).toMatchObject({ records: 10 });
    } finally {
      await lab.startCluster('primary');
    }
  });
});
