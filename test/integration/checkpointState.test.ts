import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  type ClusterName,
  commitGroupOffsets,
  config,
  createTopics,
  KAFKA_TOOLS,
  kafkaFor,
  kafkaTool,
  uniqueName,
} from '../helpers/lab.ts';

/**
 * Checkpoints and the pair's state (review finding 11) and topics the standby lacks (finding 6), against
 * the lab: real brokers, the state in moto's DynamoDB, Kafka's own tools to read group positions. Each
 * test has a pair of its own, so its state transitions touch no other test.
 */

const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

function drill(prefix: string) {
  const base = uniqueName(prefix);
  const env = {
    KDR_PAIR: `${base}-pair`,
    KDR_MIRROR_GROUP_ID: `${base}-mirror`,
    KDR_TOPICS: `${base}-t-.*`,
    KDR_GROUPS: `${base}-g-.*`,
  };
  const rt = createRuntime(loadConfig({ ...process.env, ...env }), silentLogger);
  runtimes.push(rt);
  const kdr = async (args: string[], extra: Record<string, string> = {}) => {
    const result = await runKdr([...args, '--json'], { env: { ...env, ...extra } });
    expect(result.exitCode, `kdr ${args.join(' ')}: ${result.stderr.slice(-2000)}`).toBe(0);
    return JSON.parse(result.stdout);
  };
  return {
    env,
    rt,
    kdr,
    topic: (name: string) => `${base}-t-${name}`,
    group: (name: string) => `${base}-g-${name}`,
  };
}

async function produce(cluster: ClusterName, topic: string, n: number, label: string): Promise<void> {
  const producer = kafkaFor(cluster).producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic,
      messages: Array.from({ length: n }, (_, i) => ({ partition: 0, value: `${label}-${i}` })),
    });
  } finally {
    await producer.disconnect();
  }
}

/** A group's committed offset on one partition, read with Kafka's ConsumerGroupCommand. */
async function committedWithKafkaTool(
  cluster: ClusterName,
  group: string,
  topic: string,
  partition = 0,
): Promise<number | undefined> {
  const described = await kafkaTool(KAFKA_TOOLS.consumerGroups, [
    '--bootstrap-server',
    config[cluster].brokers[0]!,
    '--describe',
    '--group',
    group,
  ]);
  for (const line of described.stdout.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (
      cols[0] === group &&
      cols[1] === topic &&
      cols[2] === String(partition) &&
      /^\d+$/.test(cols[3] ?? '')
    )
      return Number(cols[3]);
  }
  return undefined;
}

describe('checkpoints and the control state', () => {
  it('moves no standby group and writes no checkpoint after a failover, even with commit-on-standby', async () => {
    const d = drill('cps');
    const topic = d.topic('orders');
    const group = d.group('app');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce('primary', topic, 100, 'p');
    await d.kdr(['mirror', '--topics', topic, '--until-caught-up']);
    await commitGroupOffsets('primary', group, topic, [40]);

    // While MIRRORING, commit-on-standby does what it is for: the group waits at 40 on the standby.
    const mirroring = await d.kdr(['checkpoint', '--commit-on-standby']);
    expect(mirroring.skipped).toBeUndefined();
    expect(mirroring.committedOnStandby).toEqual([group]);
    expect(await committedWithKafkaTool('standby', group, topic)).toBe(40);

    // The failover, as state transitions of this pair's control item.
    const c0 = await d.rt.stateStore.getControl();
    const c1 = await d.rt.stateStore.transition(c0.epoch, {
      state: 'FAILING_OVER',
      activeCluster: 'primary',
      owner: 'checkpointState.test',
      reason: 'drill',
    });
    const failedOver = await d.rt.stateStore.transition(c1.epoch, {
      state: 'FAILED_OVER',
      activeCluster: 'standby',
      owner: 'checkpointState.test',
      reason: 'drill',
    });
    const stored = await d.rt.stateStore.getCheckpoints();

    // The application now consumes on the standby: 50 records with a real consumer, which commits 90.
    const consumed = await kafkaTool(KAFKA_TOOLS.consoleConsumer, [
      '--bootstrap-server',
      config.standby.brokers[0]!,
      '--topic',
      topic,
      '--group',
      group,
      '--max-messages',
      '50',
      '--timeout-ms',
      '60000',
    ]);
    expect(consumed.exitCode).toBe(0);
    expect(await committedWithKafkaTool('standby', group, topic)).toBe(90);

    // The old primary is still reachable and its group still at 40: the scheduled checkpoint fires.
    const after = await d.kdr(['checkpoint', '--commit-on-standby']);
    expect(after).toMatchObject({
      skipped: `pair ${d.env.KDR_PAIR} is FAILED_OVER (epoch ${failedOver.epoch}): checkpoints run only while MIRRORING`,
      committedOnStandby: [],
      checkpoints: [],
    });
    expect(await committedWithKafkaTool('standby', group, topic), 'the standby group was rewound').toBe(90);
    expect(await d.rt.stateStore.getCheckpoints()).toEqual(stored);

    // Without --json too: a line that says why, exit 0 (the schedule keeps firing during a failover).
    const text = await runKdr(['checkpoint'], { env: d.env });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toContain('checkpoint skipped: pair');
  });

  it('checkpoints no group on a topic the standby lacks, and says so instead of failing', async () => {
    const d = drill('cpm');
    const mirrored = d.topic('mirrored');
    const onlyPrimary = d.topic('onlyprimary');
    const group = d.group('app');
    await createTopics('primary', [
      { topic: mirrored, numPartitions: 1 },
      { topic: onlyPrimary, numPartitions: 1 },
    ]);
    await produce('primary', mirrored, 10, 'm');
    await produce('primary', onlyPrimary, 10, 'o');
    // Like the Lambda event sources: only `mirrored` is mirrored, although KDR_TOPICS selects both.
    await d.kdr(['mirror', '--topics', mirrored, '--until-caught-up']);
    await commitGroupOffsets('primary', group, mirrored, [7]);
    await commitGroupOffsets('primary', group, onlyPrimary, [4]);

    const result = await d.kdr(['checkpoint']);
    expect(result.checkpoints).toEqual([
      expect.objectContaining({ group, topic: mirrored, partition: 0, sourceOffset: 7, standbyOffset: 7 }),
    ]);
    expect(result.notOnStandby).toEqual([onlyPrimary]);
    expect(result.warnings).toEqual([
      `topic ${onlyPrimary} does not exist on the standby: groups ${group} were not checkpointed on it (is it mirrored?)`,
    ]);
    // Its records are still what the standby lacks: observed, and counted as not mirrored.
    expect(result.observations).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ topic: onlyPrimary, endOffset: 10, lastMirrored: null }),
        expect.objectContaining({ topic: mirrored, endOffset: 10, lastMirrored: 9 }),
      ]),
    );
    const stored = await d.rt.stateStore.getCheckpoints();
    expect(stored.groups.map((g) => g.topic)).toEqual([mirrored]);
  });
});
