import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { execa } from 'execa';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labPaths, REPO_ROOT } from '../../infra/local/paths.ts';
import { LAB_SASL } from '../../infra/local/topology.ts';
import { createKafka } from '../../src/adapters/kafka/client.ts';
import { KafkaPartitionReader } from '../../src/adapters/kafka/partitionReader.ts';
import { loadConfig } from '../../src/config.ts';
import type { SourceRecord } from '../../src/core/records.ts';
import { toKafkaEvent } from '../../src/events/kafkaEvent.ts';
import { runKdr } from '../helpers/cli.ts';
import { KAFKA_TOOLS, kafkaTool, uniqueName } from '../helpers/lab.ts';

/**
 * Mirroring between two SCRAM-secured clusters (`kdr lab up --sasl`, a lab of its own on shifted ports),
 * with the credentials read from Secrets Manager (moto) by the CLI and by the Lambda handler. A wrong
 * password fails with a clear message, and no password ever reaches an output or a log line.
 */

const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-sasl-e2e-'));
const labEnv = { KDR_LAB_DIR: dir, KDR_LAB_PORT_OFFSET: '3000', KDR_LAB_CACHE_DIR: labPaths().cache };
const config = loadConfig({ ...process.env, ...labEnv });
const wrongPassword = `wrong-${uniqueName('pw')}`;
const secretsClient = new SecretsManagerClient({
  region: config.aws.region,
  endpoint: config.aws.endpoint!,
  credentials: config.aws.credentials!,
});
const arns: Record<'good' | 'wrong', string> = { good: '', wrong: '' };

const clientFor = (bootstrap: string) =>
  new kafkajs.Kafka({
    brokers: [bootstrap],
    logLevel: kafkajs.logLevel.NOTHING,
    sasl: {
      mechanism: LAB_SASL.mechanism,
      username: LAB_SASL.client.username,
      password: LAB_SASL.client.password,
    },
  });

beforeAll(async () => {
  const up = await runKdr(['lab', 'up', '--sasl', '--json'], { env: labEnv, timeoutMs: 300_000 });
  expect(up.exitCode, up.stderr.slice(-2000)).toBe(0);
  for (const [kind, password] of [
    ['good', LAB_SASL.client.password],
    ['wrong', wrongPassword],
  ] as const) {
    const created = await secretsClient.send(
      new CreateSecretCommand({
        Name: uniqueName(`kdr-sasl-${kind}`),
        SecretString: JSON.stringify({ username: LAB_SASL.client.username, password }),
      }),
    );
    arns[kind] = created.ARN!;
  }
}, 360_000);

afterAll(async () => {
  secretsClient.destroy();
  await runKdr(['lab', 'down'], { env: labEnv });
});

/** kdr's settings for SCRAM on both clusters, the credentials in a secret. */
const saslEnv = (standbySecret: string) => ({
  ...labEnv,
  KDR_PRIMARY_SASL_MECHANISM: LAB_SASL.mechanism,
  KDR_PRIMARY_SASL_SECRET_ARN: arns.good,
  KDR_STANDBY_SASL_MECHANISM: LAB_SASL.mechanism,
  KDR_STANDBY_SASL_SECRET_ARN: standbySecret,
  KDR_LOG_LEVEL: 'debug',
});

async function createAndFill(topic: string, records: number) {
  const kafka = clientFor(config.primary.brokers[0]!);
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
  await admin.disconnect();
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  await producer.send({
    topic,
    messages: Array.from({ length: records }, (_, i) => ({
      key: `k${i}`,
      value: `v${i}`,
      headers: { h: `x${i}` },
    })),
  });
  await producer.disconnect();
}

/** The standby topic read by Kafka's own console consumer, authenticating with SCRAM. */
async function readStandby(topic: string): Promise<string[]> {
  const props = path.join(dir, 'client-sasl.properties');
  writeFileSync(
    props,
    [
      'security.protocol=SASL_PLAINTEXT',
      'sasl.mechanism=SCRAM-SHA-512',
      `sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${LAB_SASL.client.username}" password="${LAB_SASL.client.password}";`,
      'isolation.level=read_committed',
    ].join('\n'),
  );
  const result = await kafkaTool(KAFKA_TOOLS.consoleConsumer, [
    '--bootstrap-server',
    config.standby.brokers[0]!,
    '--consumer.config',
    props,
    '--topic',
    topic,
    '--from-beginning',
    '--timeout-ms',
    '10000',
  ]);
  return result.stdout.split('\n').filter((l) => l.startsWith('v'));
}

describe('SASL/SCRAM clusters', () => {
  it('mirrors between SCRAM clusters with credentials from Secrets Manager, never printing them', async () => {
    const topic = uniqueName('sasl');
    await createAndFill(topic, 200);
    const env = { ...saslEnv(arns.good), KDR_PAIR: uniqueName('sasl-pair'), KDR_TOPICS: topic };
    const mirrored = await runKdr(['mirror', '--until-caught-up', '--json'], { env });
    expect(mirrored.exitCode, mirrored.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(mirrored.stdout).recordsMirrored).toBe(200);
    expect((await readStandby(topic)).sort()).toEqual(Array.from({ length: 200 }, (_, i) => `v${i}`).sort());
    const printed = mirrored.stdout + mirrored.stderr;
    expect(printed).toContain('"level":"debug"'); // everything was logged...
    expect(printed).not.toContain(LAB_SASL.client.password); // ...but the password

    const shown = await runKdr(['config', '--json'], { env });
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(shown.stdout + shown.stderr).not.toContain(LAB_SASL.client.password);
  });

  it('takes each cluster its own way: PLAIN with an env password, SCRAM-SHA-256 with a password file', async () => {
    const topic = uniqueName('sasl-mixed');
    await createAndFill(topic, 50);
    const passwordFile = path.join(dir, 'standby-password');
    writeFileSync(passwordFile, `${LAB_SASL.client.password}\n`);
    const env = {
      ...labEnv,
      KDR_PAIR: uniqueName('sasl-pair'),
      KDR_TOPICS: topic,
      KDR_LOG_LEVEL: 'debug',
      KDR_PRIMARY_SASL_MECHANISM: 'plain',
      KDR_PRIMARY_SASL_USERNAME: LAB_SASL.client.username,
      KDR_PRIMARY_SASL_PASSWORD: LAB_SASL.client.password,
      KDR_STANDBY_SASL_MECHANISM: 'scram-sha-256',
      KDR_STANDBY_SASL_USERNAME: LAB_SASL.client.username,
      KDR_STANDBY_SASL_PASSWORD_FILE: passwordFile,
    };
    const mirrored = await runKdr(['mirror', '--until-caught-up', '--json'], { env });
    expect(mirrored.exitCode, mirrored.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(mirrored.stdout).recordsMirrored).toBe(50);
    expect((await readStandby(topic)).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `v${i}`).sort());
    expect(mirrored.stdout + mirrored.stderr).not.toContain(LAB_SASL.client.password);

    // PLAIN with a wrong password is refused by the broker and named, the password not printed.
    const wrong = await runKdr(['mirror', '--until-caught-up', '--json'], {
      env: { ...env, KDR_PRIMARY_SASL_PASSWORD: wrongPassword },
      timeoutMs: 120_000,
    });
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toContain('connecting to the primary cluster failed');
    expect(wrong.stdout + wrong.stderr).not.toContain(wrongPassword);
  });

  it('fails with a clear message on a wrong password, and prints no password', async () => {
    const topic = uniqueName('sasl-wrong');
    await createAndFill(topic, 10);
    const env = { ...saslEnv(arns.wrong), KDR_PAIR: uniqueName('sasl-pair'), KDR_TOPICS: topic };
    const result = await runKdr(['mirror', '--until-caught-up', '--json'], { env, timeoutMs: 120_000 });
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('connecting to the standby cluster failed');
    expect(result.stderr).toMatch(/SASL SCRAM SHA512 authentication failed/);
    const printed = result.stdout + result.stderr;
    expect(printed).not.toContain(wrongPassword);
    expect(printed).not.toContain(LAB_SASL.client.password);
  });

  it('the Lambda mirror handler reads the credentials from Secrets Manager once per container', async () => {
    const topic = uniqueName('sasl-fn');
    await createAndFill(topic, 20);
    const env = { ...saslEnv(arns.good), KDR_PAIR: uniqueName('sasl-pair'), KDR_TOPICS: topic };
    // A Kafka event for partition 0's records, as the event source would deliver them.
    const primary = {
      ...config.primary,
      sasl: {
        mechanism: LAB_SASL.mechanism,
        username: LAB_SASL.client.username,
        password: LAB_SASL.client.password,
      },
    };
    const reader = new KafkaPartitionReader(createKafka(primary, 'kdr-test'), 'primary');
    const records: SourceRecord[] = [];
    try {
      const [offsets] = await reader.offsets(topic, [0]);
      for await (const batch of reader.readRange({ topic, partition: 0 }, 0, offsets!.lastStable))
        records.push(...batch);
    } finally {
      await reader.close();
    }
    const count = records.length;
    expect(count).toBeGreaterThan(0);
    const event = toKafkaEvent([{ topic, partition: 0, records }]);
    const script = `
      const { handler } = await import(${JSON.stringify(path.join(REPO_ROOT, 'functions/mirror.ts'))});
      const event = JSON.parse(process.argv[1]);
      const first = await handler(event);
      const second = await handler(event);
      // As the Lambda runtime does, end when the handler returned (kafkajs can leave sockets behind).
      process.stdout.write('\\n' + JSON.stringify({ first, second }) + '\\n', () => process.exit(0));
    `;
    const run = await execa(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify(event)],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          ...env,
          // As in Lambda: the function's name is set, and the endpoint and credentials come from the environment.
          AWS_LAMBDA_FUNCTION_NAME: 'mirror',
          AWS_ENDPOINT_URL: config.aws.endpoint!,
          AWS_ACCESS_KEY_ID: config.aws.credentials!.accessKeyId,
          AWS_SECRET_ACCESS_KEY: config.aws.credentials!.secretAccessKey,
        },
        reject: false,
        timeout: 120_000,
      },
    );
    expect(run.exitCode, run.stderr.slice(-2000)).toBe(0);
    const { first, second } = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
    expect(first.recordsMirrored).toBe(count);
    expect(second.recordsMirrored).toBe(0); // the same event again: nothing twice
    expect(run.stdout + run.stderr).not.toContain(LAB_SASL.client.password);
  });
});
