import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Lab } from '../../infra/local/lab.ts';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import { KDR_BIN, runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, kafkaFor, uniqueName } from '../helpers/lab.ts';
import { compareClusters, edgeCaseRecord, prng, toMessage } from '../helpers/records.ts';

/**
 * The mirror under failure, through the real CLI: processes killed with SIGKILL at random points while
 * a producer runs (commits and aborts included), and a standby cluster that goes away and comes back.
 * After each, kcat must find every source record on the standby exactly once.
 */

const running = new Set<ChildProcess>();

function startMirror(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [KDR_BIN, 'mirror'], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  running.add(child);
  child.on('exit', () => running.delete(child));
  return { child, output: () => output };
}

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/** A producer writing until stopped: plain batches, committed transactions and aborted ones. */
function backgroundProducer(topic: string, partitions: number, seed: number) {
  let stop = false;
  const random = prng(seed);
  const done = (async () => {
    const plain = kafkaFor('primary').producer({ idempotent: true, maxInFlightRequests: 1 });
    const txn = kafkaFor('primary').producer({
      transactionalId: uniqueName('chaos-producer'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await Promise.all([plain.connect(), txn.connect()]);
    let i = 0;
    try {
      while (!stop) {
        const records = Array.from({ length: 50 }, () => edgeCaseRecord(i++, random, Date.now()));
        const messages = records.map((r) => toMessage(r, Math.floor(random() * partitions)));
        const roll = random();
        if (roll < 0.6) {
          await plain.send({ topic, messages });
        } else {
          const t = await txn.transaction();
          await t.send({ topic, messages });
          if (roll < 0.85) await t.commit();
          else await t.abort();
        }
        // About 500 records/s: a steady stream the small-transaction mirrors can keep up with on 2 cores.
        await sleep(100);
      }
    } finally {
      await Promise.all([plain.disconnect(), txn.disconnect()]);
    }
    return i;
  })();
  return {
    stop: async () => {
      stop = true;
      return done;
    },
  };
}

afterEach(async () => {
  await Promise.all([...running].map((c) => kill(c, 'SIGKILL')));
});

describe('kdr mirror under failure', () => {
  it('loses and duplicates nothing when processes are SIGKILLed at random points, 12 times', {
    timeout: 900_000,
  }, async () => {
    const seed = Number(process.env.KDR_TEST_SEED ?? Date.now() % 100_000);
    const random = prng(seed);
    const topic = uniqueName('crash');
    await createTopics('primary', [
      { topic, numPartitions: 3, configEntries: [{ name: 'retention.ms', value: '-1' }] },
    ]);
    const env = {
      KDR_TOPICS: topic,
      KDR_MIRROR_GROUP_ID: uniqueName('crash-group'),
      // Small transactions: a kill lands between a commit and its offset-map entry more often.
      KDR_MIRROR_MAX_TRANSACTION_RECORDS: '40',
    };
    const producer = backgroundProducer(topic, 3, seed);
    // Two processes share the partitions through the consumer group; one of them is killed each round.
    const mirrors = [startMirror(env), startMirror(env)];
    let repairs = 0;
    for (let round = 0; round < 12; round++) {
      const victim = Math.floor(random() * mirrors.length);
      // Kill while it mirrors: once it owns partitions, at a random moment.
      await eventually(
        `mirror ${victim} owns partitions (round ${round})`,
        () => mirrors[victim]!.output().includes('partitions assigned'),
        120_000,
      );
      await sleep(random() * 3000);
      await kill(mirrors[victim]!.child, 'SIGKILL');
      repairs += mirrors[victim]!.output().split('repaired the offset map').length - 1;
      mirrors[victim] = startMirror(env);
    }
    const produced = await producer.stop();
    for (const m of mirrors) await kill(m.child, 'SIGKILL');
    expect(produced, `seed ${seed}`).toBeGreaterThan(1000);

    // The last run catches up with normal-sized transactions.
    const { KDR_MIRROR_MAX_TRANSACTION_RECORDS: _small, ...catchUpEnv } = env;
    const final = await runKdr(['mirror', '--until-caught-up', '--json'], {
      env: catchUpEnv,
      timeoutMs: 600_000,
    });
    expect(final.exitCode, final.stderr.slice(-2000)).toBe(0);
    const comparison = await compareClusters([topic]);
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
