import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Lab } from '../../infra/local/lab.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { loadConfig } from '../../src/config.ts';
import { backgroundProducer, killAll, startMirror } from '../helpers/chaos.ts';
import { runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, kafkaFor, uniqueName } from '../helpers/lab.ts';
import { compareClusters } from '../helpers/records.ts';

/**
 * A lab of its own with three brokers per cluster (replication factor 3, min.insync.replicas 2): one
 * standby broker is killed and restarted while kdr mirrors, then one primary broker. Nothing is lost or
 * duplicated, and the mirror carries on.
 */

const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-chaos-brokers-'));
const labEnv = { KDR_LAB_DIR: dir, KDR_LAB_PORT_OFFSET: '1000', KDR_LAB_CACHE_DIR: labPaths().cache };
const cfg = loadConfig({ ...process.env, ...labEnv });
const lab = new Lab({ dir, portOffset: 1000 });

beforeAll(async () => {
  const up = await runKdr(['lab', 'up', '--brokers', '3'], { env: labEnv, timeoutMs: 400_000 });
  expect(up.exitCode, up.stderr.slice(-2000)).toBe(0);
}, 420_000);
afterEach(killAll);
afterAll(async () => {
  await runKdr(['lab', 'down'], { env: labEnv });
});

it('survives a standby broker and a primary broker killed during mirroring', {
  timeout: 900_000,
}, async () => {
  const topic = uniqueName('brokers');
  await createTopics('primary', [{ topic, numPartitions: 3 }], cfg);
  const env = { ...labEnv, KDR_TOPICS: topic, KDR_MIRROR_GROUP_ID: uniqueName('brokers-g') };
  const producer = backgroundProducer(topic, 3, 11, 'primary', kafkaFor('primary', cfg));
  const mirror = startMirror(env);
  await eventually('the mirror runs', () => mirror.output().includes('partitions assigned'), 180_000);
  await sleep(5000);
  await lab.stopNode('standby', 2, 'SIGKILL');
  await sleep(15_000);
  await lab.startCluster('standby');
  await sleep(5000);
  await lab.stopNode('primary', 3, 'SIGKILL');
  await sleep(15_000);
  await lab.startCluster('primary');
  await sleep(5000);
  const produced = await producer.stop();
  expect(mirror.child.exitCode).toBeNull(); // it carried on
  const caughtUp = await runKdr(['mirror', '--until-caught-up', '--json'], { env, timeoutMs: 400_000 });
  expect(caughtUp.exitCode, caughtUp.stderr.slice(-2000)).toBe(0);
  const comparison = await compareClusters([topic], cfg);
  expect(comparison.problems).toEqual([]);
  expect(comparison.standbyDigest).toBe(comparison.sourceDigest);
  expect(produced).toBeGreaterThan(1000);
  console.info(`broker kills: ${produced} records produced, ${comparison.records} compared`);
});
