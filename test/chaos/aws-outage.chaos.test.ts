import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { retryBackoffMs } from '../../src/adapters/kafka/groupMirror.ts';
import { loadConfig } from '../../src/config.ts';
import { decodeSegment } from '../../src/core/segment.ts';
import type { SnapshotManifest } from '../../src/core/snapshot.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { backgroundProducer, killAll, startMirror } from '../helpers/chaos.ts';
import { runKdr } from '../helpers/cli.ts';
import { config, createTopics, eventually, readWithKcat, uniqueName } from '../helpers/lab.ts';
import { compareClusters } from '../helpers/records.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcpProxy.ts';

/**
 * S3 and DynamoDB unreachable for 30 s (a TCP proxy in front of moto that first refuses, then stalls
 * connections; moto keeps its state), during mirroring and during a snapshot: kdr retries, says so, and
 * resumes without loss when the endpoint returns.
 */

let proxy: TcpProxy;
let endpoint: string;
const runtimes: Runtime[] = [];

/** moto takes any credentials; behind the proxy the endpoint is not the lab's, so kdr needs them set. */
const credentials = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' };

beforeAll(async () => {
  const moto = new URL(config.aws.endpoint!);
  proxy = await startTcpProxy({ host: moto.hostname, port: Number(moto.port) });
  endpoint = `http://127.0.0.1:${proxy.port}`;
});
afterEach(killAll);
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
  await proxy.close();
});

/** 15 s of refused connections, then 15 s of stalled ones; then the endpoint is back. */
async function outage() {
  proxy.setMode({ kind: 'refuse' });
  proxy.cut();
  await sleep(15_000);
  proxy.setMode({ kind: 'stall' });
  await sleep(15_000);
  proxy.setMode({ kind: 'pass' });
}

/** The failed attempts of each partition's batches, as `kdr mirror` logged them. */
function failedAttempts(output: string): Map<number, { attempt: number; at: number }[]> {
  const byPartition = new Map<number, { attempt: number; at: number }[]>();
  for (const line of output.split('\n')) {
    if (!line.includes('"mirroring a batch failed')) continue;
    const entry = JSON.parse(line) as { time: string; partition: number; attempt: number };
    const list = byPartition.get(entry.partition) ?? [];
    list.push({ attempt: entry.attempt, at: Date.parse(entry.time) });
    byPartition.set(entry.partition, list);
  }
  return byPartition;
}

it('mirrors through a 30 s S3/DynamoDB outage without loss or duplicate', { timeout: 600_000 }, async () => {
  const topic = uniqueName('aws-out');
  await createTopics('primary', [{ topic, numPartitions: 3 }]);
  const env = {
    KDR_TOPICS: topic,
    KDR_MIRROR_GROUP_ID: uniqueName('aws-out-g'),
    KDR_MIRROR_MAX_TRANSACTION_RECORDS: '100',
    AWS_ENDPOINT_URL: endpoint,
    ...credentials,
  };
  const producer = backgroundProducer(topic, 3, 7);
  const mirror = startMirror(env);
  await eventually('the mirror runs', () => mirror.output().includes('partitions assigned'), 120_000);
  await sleep(3000);
  expect(mirror.output()).not.toContain('mirroring a batch failed'); // healthy before the outage
  await outage();
  await sleep(5000);
  const produced = await producer.stop();
  // Loud: the failures were reported while the endpoint was gone; the process kept going.
  expect(mirror.output()).toContain('mirroring a batch failed');
  expect(mirror.child.exitCode).toBeNull();
  // With backoff: a partition's attempts count up (1 again after a success), and attempt n+1 came no
  // sooner than the policy's wait after attempt n (the wait is a sleep, so this bound cannot flake).
  const attempts = failedAttempts(mirror.output());
  console.info(
    'failed attempts by partition (attempt@ms since the first failure):',
    JSON.stringify(
      Object.fromEntries(
        [...attempts].map(([p, list]) => [p, list.map((a) => `${a.attempt}@${a.at - list[0]!.at}`)]),
      ),
    ),
  );
  expect(Math.max(...[...attempts.values()].flat().map((a) => a.attempt))).toBeGreaterThanOrEqual(3);
  for (const [partition, list] of attempts) {
    for (let i = 1; i < list.length; i++) {
      const [previous, current] = [list[i - 1]!, list[i]!];
      expect([1, previous.attempt + 1], `partition ${partition}`).toContain(current.attempt);
      if (current.attempt === previous.attempt + 1)
        expect(current.at - previous.at, `partition ${partition}`).toBeGreaterThanOrEqual(
          retryBackoffMs(previous.attempt) - 5,
        );
    }
  }
  const caughtUp = await runKdr(['mirror', '--until-caught-up', '--json'], { env, timeoutMs: 300_000 });
  expect(caughtUp.exitCode, caughtUp.stderr.slice(-2000)).toBe(0);
  const comparison = await compareClusters([topic]);
  expect(comparison.problems).toEqual([]);
  expect(comparison.standbyDigest).toBe(comparison.sourceDigest);
  expect(produced).toBeGreaterThan(1000);
});

it('a snapshot caught by the outage fails loudly, then completes exactly when S3 is back', {
  timeout: 600_000,
}, async () => {
  const prefix = uniqueName('aws-snap');
  const topic = `${prefix}-t`;
  await createTopics('primary', [{ topic, numPartitions: 2 }]);
  const producer = backgroundProducer(topic, 2, 9);
  await sleep(8000);
  await producer.stop();
  const env = {
    KDR_PAIR: uniqueName('aws-snap-pair'),
    KDR_TOPICS: `${prefix}-.*`,
    KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
    KDR_SNAPSHOT_SEGMENT_BYTES: '5000',
    KDR_SNAPSHOT_LEASE_MS: '2000',
    AWS_ENDPOINT_URL: endpoint,
    ...credentials,
  };
  const during = runKdr(['snapshot', '--json'], { env, timeoutMs: 300_000 });
  // Once it has saved progress (a segment or more is up), the endpoint goes away for 30 s.
  const rtDirect = createRuntime(
    loadConfig({
      ...process.env,
      ...env,
      AWS_ENDPOINT_URL: config.aws.endpoint,
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
    }),
    silentLogger,
  );
  runtimes.push(rtDirect);
  await eventually(
    'the snapshot saved progress',
    () => rtDirect.objectStore.exists(`test/${prefix}/progress/primary.json`),
    60_000,
  );
  await outage();
  const failed = await during;
  // The SDK's retries with backoff cannot outlast 30 s: the run fails, saying what it could not reach
  // (an object in S3, or the snapshot lease in DynamoDB, whichever it needed first).
  expect(failed.exitCode).not.toBe(0);
  expect(failed.stderr).toMatch(
    /^kdr: could not (write|read|list|save|put|take) .*(s3:\/\/|snapshot lease)/m,
  );
  await sleep(2500); // the lease of a run that died expires
  const resumed = await runKdr(['snapshot', '--json'], { env, timeoutMs: 300_000 });
  expect(resumed.exitCode, resumed.stderr.slice(-2000)).toBe(0);
  const { snapshotId } = JSON.parse(resumed.stdout);
  const rt = createRuntime(
    loadConfig({
      ...process.env,
      ...env,
      AWS_ENDPOINT_URL: config.aws.endpoint,
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
    }),
    silentLogger,
  );
  runtimes.push(rt);
  const manifest = JSON.parse(
    (await rt.objectStore.get(`test/${prefix}/manifests/${snapshotId}.json`)).toString(),
  ) as SnapshotManifest;
  // Every committed record on the cluster, each exactly once, across the chain of segments.
  const snapshotted = new Map<number, number[]>();
  for (const s of manifest.segments)
    for (const r of await decodeSegment(await rt.objectStore.get(s.key), s.sha256))
      snapshotted.set(s.partition, [...(snapshotted.get(s.partition) ?? []), r.offset]);
  for (const p of [0, 1]) {
    const onCluster = (await readWithKcat('primary', topic, { partition: p })).map((r) => r.offset);
    expect(snapshotted.get(p), `partition ${p}`).toEqual(onCluster);
  }
});
