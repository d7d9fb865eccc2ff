import { afterEach, describe, expect, it } from 'vitest';
import { Lab } from '../../infra/local/lab.ts';
import { kill, killAll, killDrill, startMirror } from '../helpers/chaos.ts';
import { runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, kafkaFor, uniqueName } from '../helpers/lab.ts';
import { compareClusters, edgeCaseRecord, prng, toMessage } from '../helpers/records.ts';

/**
 * The mirror under failure, through the real CLI: processes killed with SIGKILL at random points while
 * a producer runs (commits and aborts included), and a standby cluster that goes away and comes back.
 * After each, kcat must find every source record on the standby exactly once.
 */

afterEach(killAll);

describe('kdr mirror under failure', () => {
  it('loses and duplicates nothing when processes are SIGKILLed at random points, 12 times', {
    timeout: 900_000,
  }, async () => {
    const seed = Number(process.env.KDR_TEST_SEED ?? Date.now() % 100_000);
    const { produced, repairs, final, comparison } = await killDrill(12, seed);
    expect(produced, `seed ${seed}`).toBeGreaterThan(1000);
    expect(final.exitCode, final.stderr.slice(-2000)).toBe(0);
    expect(comparison.problems, `seed ${seed}`).toEqual([]);
    expect(comparison.standbyDigest).toBe(comparison.sourceDigest);
    expect(comparison.records).toBeGreaterThan(500);
    console.info(
      `crash test (seed ${seed}): ${produced} records produced, ${repairs} offset-map repairs after kills`,
    );
  });

  it('fails loudly while the standby is down and resumes without loss when it returns', {
    timeout: 900_000,
  }, async () => {
    const lab = new Lab();
    const topic = uniqueName('standby-down');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    const env = { KDR_TOPICS: topic, KDR_MIRROR_GROUP_ID: uniqueName('down-group') };
    const random = prng(5);
    const producer = kafkaFor('primary').producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const sendSome = async (n: number) => {
      for (let i = 0; i < n; i += 100) {
        await producer.send({
          topic,
          messages: Array.from({ length: 100 }, (_, j) =>
            toMessage(edgeCaseRecord(i + j, random, Date.now()), (i + j) % 2),
          ),
        });
      }
    };
    const mirror = startMirror(env);
    try {
      await sendSome(1000);
      await eventually(
        'the mirror copied the first records',
        () => mirror.output().includes('partitions assigned'),
        60_000,
      );
      await lab.stopCluster('standby');
      await sendSome(1000);
      await eventually(
        'the mirror reports that writing to the standby fails',
        () => mirror.output().includes('mirroring a batch failed'),
        120_000,
      );
      expect(mirror.child.exitCode).toBeNull(); // it keeps trying, it does not die
    } finally {
      await lab.startCluster('standby');
      await producer.disconnect();
    }
    const caughtUp = await runKdr(['mirror', '--until-caught-up', '--json'], { env, timeoutMs: 300_000 });
    await kill(mirror.child, 'SIGINT');
    expect(caughtUp.exitCode, caughtUp.stderr.slice(-2000)).toBe(0);
    const comparison = await compareClusters([topic]);
    expect(comparison.problems).toEqual([]);
    expect(comparison.records).toBe(2000);
  });
});
