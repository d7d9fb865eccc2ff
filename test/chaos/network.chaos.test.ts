import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Lab } from '../../infra/local/lab.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { labClusters } from '../../infra/local/topology.ts';
import { loadConfig } from '../../src/config.ts';
import { backgroundProducer, killAll, startMirror } from '../helpers/chaos.ts';
import { runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, kafkaFor, uniqueName } from '../helpers/lab.ts';
import { compareClusters } from '../helpers/records.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcpProxy.ts';

/**
 * A slow, then a broken network between kdr and the standby: the standby broker advertises a port where a
 * TCP proxy sits (a lab of its own), which first delays every chunk, then drops every connection
 * several times. No loss, no duplicate.
 */

const OFFSET = 3000;
const SHIFT = 500;
const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-chaos-net-'));
const labEnv = { KDR_LAB_DIR: dir, KDR_LAB_PORT_OFFSET: String(OFFSET), KDR_LAB_CACHE_DIR: labPaths().cache };
const cfg = loadConfig({ ...process.env, ...labEnv });
const lab = new Lab({ dir, portOffset: OFFSET });
let proxy: TcpProxy;

beforeAll(async () => {
  const standby = labClusters(1, OFFSET).find((c) => c.name === 'standby')!.nodes[0]!;
  proxy = await startTcpProxy({ host: '127.0.0.1', port: standby.brokerPort }, standby.brokerPort + SHIFT);
  await lab.up(1, { advertiseShift: { standby: SHIFT } });
}, 400_000);
afterEach(killAll);
afterAll(async () => {
  await lab.down();
  await proxy.close();
});

it('loses and duplicates nothing through a delayed and a repeatedly cut link to the standby', {
  timeout: 900_000,
}, async () => {
  const topic = uniqueName('net');
  await createTopics('primary', [{ topic, numPartitions: 3 }], cfg);
  const env = {
    ...labEnv,
    KDR_TOPICS: topic,
    KDR_MIRROR_GROUP_ID: uniqueName('net-g'),
    KDR_MIRROR_MAX_TRANSACTION_RECORDS: '100',
  };
  const producer = backgroundProducer(topic, 3, 13, 'primary', kafkaFor('primary', cfg));
  const mirror = startMirror(env);
  await eventually('the mirror runs', () => mirror.output().includes('partitions assigned'), 180_000);
  const before = proxy.connections();
  await sleep(3000);
  proxy.setMode({ kind: 'delay', ms: 200 });
  await sleep(15_000);
  proxy.setMode({ kind: 'pass' });
  for (let i = 0; i < 4; i++) {
    await sleep(3000);
    proxy.cut();
  }
  await sleep(5000);
  const produced = await producer.stop();
  expect(proxy.connections()).toBeGreaterThan(before); // kdr's traffic really went through the proxy
  const caughtUp = await runKdr(['mirror', '--until-caught-up', '--json'], { env, timeoutMs: 400_000 });
  expect(caughtUp.exitCode, caughtUp.stderr.slice(-2000)).toBe(0);
  const comparison = await compareClusters([topic], cfg);
  expect(comparison.problems).toEqual([]);
  expect(comparison.standbyDigest).toBe(comparison.sourceDigest);
  expect(produced).toBeGreaterThan(1000);
  console.info(
    `network chaos: ${produced} records produced, ${proxy.connections() - before} connections through the proxy`,
  );
});
