import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import { KDR_BIN, runKdr } from './cli.ts';
import { type ClusterName, createTopics, eventually, kafkaFor, uniqueName } from './lab.ts';
import { compareClusters, edgeCaseRecord, prng, toMessage } from './records.ts';

/**
 * What the failure tests share: `kdr mirror` processes they can kill, a producer that keeps writing
 * (plain batches, committed and aborted transactions) while things break, and the kill drill itself.
 */

const running = new Set<ChildProcess>();

/** Kills every mirror a test started (afterEach). */
export async function killAll(): Promise<void> {
  await Promise.all([...running].map((c) => kill(c, 'SIGKILL')));
}

export function startMirror(
  env: Record<string, string>,
  args: string[] = [],
): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [KDR_BIN, 'mirror', ...args], {
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

export async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/** A producer writing until stopped: plain batches, committed transactions and aborted ones. */
export function backgroundProducer(
  topic: string,
  partitions: number,
  seed: number,
  cluster: ClusterName = 'primary',
  kafka = kafkaFor(cluster),
) {
  let stop = false;
  let failures = 0;
  const random = prng(seed);
  const done = (async () => {
    const plain = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    const txn = kafka.producer({
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
        try {
          if (roll < 0.6) {
            await plain.send({ topic, messages });
          } else {
            const t = await txn.transaction();
            try {
              await t.send({ topic, messages });
              if (roll < 0.85) await t.commit();
              else await t.abort();
            } catch (error) {
              await t.abort().catch(() => {});
              throw error;
            }
          }
        } catch {
          // A broker or the network is being broken on purpose: what reached the primary is what the
          // comparison checks; keep producing.
          failures++;
          await sleep(500);
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
    /** Sends that failed while things were being broken (their records may or may not be there). */
    failures: () => failures,
  };
}

/**
 * Two `kdr mirror` processes share a topic's partitions while a producer runs; one of them is SIGKILLed
 * at a random moment, `kills` times, and replaced. Then a last run catches up, and both clusters are
 * compared record by record (kcat) with a checksum over each side.
 */
export async function killDrill(kills: number, seed: number) {
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
  const mirrors = [startMirror(env), startMirror(env)];
  let repairs = 0;
  for (let round = 0; round < kills; round++) {
    const victim = Math.floor(random() * mirrors.length);
    // Kill while it mirrors: once it owns partitions, at a random moment.
    await eventually(
      `mirror ${victim} owns partitions (round ${round})`,
      () => mirrors[victim]!.output().includes('partitions assigned'),
      120_000,
    );
    await sleep(random() * 3000);
    await kill(mirrors[victim]!.child, 'SIGKILL');
    // Entries of transactions a kill stopped before their commit, found and removed by the next writer.
    repairs += mirrors[victim]!.output().split('whose transaction never committed').length - 1;
    mirrors[victim] = startMirror(env);
  }
  const produced = await producer.stop();
  for (const m of mirrors) await kill(m.child, 'SIGKILL');
  // The last run catches up with normal-sized transactions.
  const { KDR_MIRROR_MAX_TRANSACTION_RECORDS: _small, ...catchUpEnv } = env;
  const final = await runKdr(['mirror', '--until-caught-up', '--json'], {
    env: catchUpEnv,
    timeoutMs: 600_000,
  });
  const comparison = await compareClusters([topic]);
  return { topic, produced, repairs, final, comparison };
}
