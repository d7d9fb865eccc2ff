import { describe, expect, it } from 'vitest';
import { unmirroredOffsets } from '../../src/services/checkpoint.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  type ClusterName,
  config,
  createTopics,
  KAFKA_TOOLS,
  kafkaFor,
  kafkaTool,
  readWithKcat,
  uniqueName,
} from '../helpers/lab.ts';

/**
 * The second cycle (review findings 10 and 14): after a failover and a failback, the primary holds kdr's
 * copies of what applications wrote on the standby (R records, reverse map), which the forward mirror
 * never sends back. A checkpoint must neither count them as lag nor translate a group in the middle of
 * them past their standby originals. Real failover, failback and consumer, through the CLI.
 */

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

describe('checkpoints after a failback', () => {
  it('translate a group inside the mirrored-back records to their standby originals and count no lag for them', async () => {
    const base = uniqueName('cpt');
    const topic = `${base}-t`;
    const group = `${base}-g`;
    const env = {
      KDR_PAIR: `${base}-pair`,
      KDR_MIRROR_GROUP_ID: `${base}-mirror`,
      KDR_TOPICS: topic,
      KDR_GROUPS: group,
    };
    const kdr = async (args: string[]) => {
      const result = await runKdr([...args, '--json'], { env });
      expect(result.exitCode, `kdr ${args.join(' ')}: ${result.stderr.slice(-2000)}`).toBe(0);
      return JSON.parse(result.stdout);
    };
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce('primary', topic, 10, 'p');
    await kdr(['mirror', '--topics', topic, '--until-caught-up']);
    await kdr(['failover', '--planned']);
    // The applications on the standby write S_1 … S_100; the failback copies them to the primary.
    await produce('standby', topic, 100, 's');
    await kdr(['failback']);
    await kdr(['mirror', '--topics', topic, '--until-caught-up']);

    const standby = await readWithKcat('standby', topic);
    const primary = await readWithKcat('primary', topic);
    const values = (rs: typeof standby) => rs.map((r) => r.value?.toString());
    const expected = [
      ...Array.from({ length: 10 }, (_, i) => `p-${i}`),
      ...Array.from({ length: 100 }, (_, i) => `s-${i}`),
    ];
    expect(values(primary)).toEqual(expected);
    expect(values(standby)).toEqual(expected);

    // A consumer on the primary reads p-0 … p-9 and half of the copies, s-0 … s-49, and commits.
    const consumed = await kafkaTool(KAFKA_TOOLS.consoleConsumer, [
      '--bootstrap-server',
      config.primary.brokers[0]!,
      '--topic',
      topic,
      '--group',
      group,
      '--from-beginning',
      '--max-messages',
      '60',
      '--timeout-ms',
      '60000',
    ]);
    expect(consumed.exitCode).toBe(0);
    const next = primary[60]!; // the copy of s-50: the next record the group reads
    expect(next.value?.toString()).toBe('s-50');

    const checkpoint = await kdr(['checkpoint']);
    expect(checkpoint.skipped).toBeUndefined();
    // The copies are not lag: nothing is left to mirror, and the observation says so.
    const [observation] = checkpoint.observations;
    expect(observation).toMatchObject({
      topic,
      partition: 0,
      lastMirrored: 9,
      firstUnmirroredTimestamp: null,
    });
    expect(unmirroredOffsets(observation)).toBe(0);
    // On the standby the group must go on at the original of s-50, not after all of them.
    const original = standby.find((r) => r.value?.toString() === 's-50')!;
    expect(checkpoint.checkpoints).toEqual([
      expect.objectContaining({
        group,
        topic,
        partition: 0,
        sourceOffset: next.offset,
        standbyOffset: original.offset,
      }),
    ]);
    // kdr translate agrees.
    const translated = await kdr([
      'translate',
      '--topic',
      topic,
      '--partition',
      '0',
      '--offset',
      String(next.offset),
    ]);
    expect(translated).toMatchObject({ exact: true, standbyOffset: original.offset });
  });
});
