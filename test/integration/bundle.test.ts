import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildFunctions } from '../../infra/build.ts';
import { toKafkaEvent } from '../../src/events/kafkaEvent.ts';
import { config, createTopics, kafkaFor, readWithKcat, uniqueName } from '../helpers/lab.ts';

/**
 * The Lambda bundles run on their own: copied away from the repository (no node_modules to fall back
 * on) and invoked with plain node, as the Lambda runtime would.
 */

let bundles: string;

beforeAll(async () => {
  await buildFunctions();
  bundles = mkdtempSync(path.join(os.tmpdir(), 'kdr-bundle-'));
  cpSync(path.join(import.meta.dirname, '../../.build'), bundles, { recursive: true });
}, 120_000);

async function invoke(name: string, event: unknown, env: Record<string, string> = {}) {
  const script = path.join(bundles, `invoke-${name}.cjs`);
  writeFileSync(
    script,
    `require('./${name}/index.js').handler(JSON.parse(process.argv[2]))
      .then((r) => { process.stdout.write('\\n' + JSON.stringify(r) + '\\n'); process.exit(0); }, (e) => { process.stderr.write('FAILED ' + e.name + ': ' + e.message); process.exit(1); });`,
  );
  return execa(process.execPath, [script, JSON.stringify(event)], {
    cwd: bundles,
    reject: false,
    timeout: 120_000,
    env: {
      PATH: process.env.PATH,
      AWS_LAMBDA_FUNCTION_NAME: name,
      AWS_REGION: config.aws.region,
      AWS_ENDPOINT_URL: config.aws.endpoint!,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      KDR_PRIMARY_BROKERS: config.primary.brokers.join(','),
      KDR_STANDBY_BROKERS: config.standby.brokers.join(','),
      ...env,
    },
    extendEnv: false,
  });
}

describe('Lambda bundles', () => {
  it('mirror: runs from its bundle alone, zstd (WASM) included', async () => {
    const topic = uniqueName('bundle');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const producer = kafkaFor('primary').producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })),
    });
    await producer.disconnect();
    const records = (await readWithKcat('primary', topic)).map((r) => ({
      offset: r.offset,
      timestamp: r.timestamp,
      timestampType: 'CreateTime' as const,
      key: r.key,
      value: r.value,
      headers: [],
    }));
    const result = await invoke('mirror', toKafkaEvent([{ topic, partition: 0, records }]), {
      KDR_STANDBY_COMPRESSION: 'zstd',
    });
    expect(result.exitCode, result.stderr).toBe(0);
    // stdout also carries the handler's metrics (CloudWatch EMF lines); the result is the last line.
    const lines = result.stdout.trim().split('\n');
    expect(JSON.parse(lines.at(-1)!).recordsMirrored).toBe(20);
    expect(lines.some((l) => l.includes('"RecordsMirrored":20'))).toBe(true);
    expect((await readWithKcat('standby', topic)).map((r) => r.value!.toString())).toEqual(
      records.map((r) => r.value!.toString()),
    );
  });

  it('checkpoint: runs from its bundle alone', async () => {
    const result = await invoke(
      'checkpoint',
      {},
      { KDR_PAIR: uniqueName('bundle-pair'), KDR_TOPICS: uniqueName('no-such-topic') },
    );
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.trim().split('\n').at(-1)!)).toMatchObject({ offsets: 0, partitions: 0 });
  });

  it.each(['failover', 'failback'])('%s: loads from its bundle and validates its payload', async (name) => {
    const result = await invoke(name, { timeoutSeconds: -1 });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(
      `FAILED EventError: malformed ${name} request at timeoutSeconds: expected more than 0 seconds, got -1`,
    );
  });

  it('snapshot and restore: run from their bundles alone', async () => {
    const topic = uniqueName('bundle-snap');
    const env = {
      KDR_PAIR: uniqueName('bundle-pair'),
      KDR_TOPICS: topic,
      KDR_SNAPSHOT_PREFIX: `test/${topic}`,
    };
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const producer = kafkaFor('primary').producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })),
    });
    await producer.disconnect();
    const snapshot = await invoke('snapshot', {}, env);
    expect(snapshot.exitCode, snapshot.stderr).toBe(0);
    const taken = JSON.parse(snapshot.stdout.trim().split('\n').at(-1)!);
    expect(taken).toMatchObject({ status: 'complete', records: 20 });
    const restore = await invoke(
      'restore',
      { snapshotId: taken.snapshotId, target: 'standby', topicPrefix: 'bundle.' },
      env,
    );
    expect(restore.exitCode, restore.stderr).toBe(0);
    expect(JSON.parse(restore.stdout.trim().split('\n').at(-1)!)).toMatchObject({
      status: 'complete',
      records: 20,
    });
    expect((await readWithKcat('standby', `bundle.${topic}`)).map((r) => r.value!.toString())).toEqual(
      Array.from({ length: 20 }, (_, i) => `v${i}`),
    );
  });

  it('mirror: rejects a malformed event from its bundle', async () => {
    const result = await invoke('mirror', { eventSource: 'nope' });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('FAILED EventError: malformed Kafka event at eventSource');
  });
});
