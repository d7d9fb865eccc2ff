import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFunctions } from '../../infra/build.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { createCa, LAB_TLS_PASSWORD } from '../../infra/local/tls.ts';
import { createKafka } from '../../src/adapters/kafka/client.ts';
import { KafkaPartitionReader } from '../../src/adapters/kafka/partitionReader.ts';
import { type KdrConfig, loadConfig } from '../../src/config.ts';
import type { SourceRecord } from '../../src/core/records.ts';
import { toKafkaEvent } from '../../src/events/kafkaEvent.ts';
import { invokeLocal, runKdr } from '../helpers/cli.ts';
import { commitGroupOffsets, createTopics, readWithKcat, uniqueName } from '../helpers/lab.ts';
import { describeGroup } from '../helpers/operations.ts';
import { readPartition } from '../helpers/records.ts';

/**
 * kdr against brokers whose certificates a private CA signed (`kdr lab up --tls`, a lab of its own on
 * shifted ports). The CA and the client certificate are Secrets Manager secrets in the formats the
 * Lambda Kafka event source reads, handed to the functions by serverless.yml's params, as a deploy
 * hands them (`sls invoke local --stage local --param=...`). kcat and Kafka's own tools check the
 * standby over TLS. A wrong CA, or no client certificate where one is required, fails naming the cluster.
 */

const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-tls-e2e-'));
const labEnv = { KDR_LAB_DIR: dir, KDR_LAB_PORT_OFFSET: '3200', KDR_LAB_CACHE_DIR: labPaths().cache };
const base = loadConfig({ ...labEnv });
const secretsClient = new SecretsManagerClient({
  region: base.aws.region,
  endpoint: base.aws.endpoint!,
  credentials: base.aws.credentials!,
});
const arns = { ca: '', client: '', clientEncrypted: '', wrongCa: '' };
let files: { caPem: string; clientChainPem: string; clientKeyPem: string; clientKeyEncryptedPem: string };
let mtlsBootstrap: Record<'primary' | 'standby', string>;
/** What the tests' own clients use: the lab CA (TLS listeners) or the CA and client certificate (mTLS). */
let tlsConfig: KdrConfig;
let mtlsConfig: KdrConfig;

async function createSecret(kind: string, value: object): Promise<string> {
  const created = await secretsClient.send(
    new CreateSecretCommand({ Name: uniqueName(`kdr-tls-${kind}`), SecretString: JSON.stringify(value) }),
  );
  return created.ARN!;
}

beforeAll(async () => {
  await buildFunctions(['mirror', 'snapshot', 'failover']);
  const up = await runKdr(['lab', 'up', '--tls', '--json'], { env: labEnv, timeoutMs: 300_000 });
  expect(up.exitCode, up.stderr.slice(-2000)).toBe(0);
  const status = JSON.parse(up.stdout) as {
    tls: typeof files & { mtls: { name: 'primary' | 'standby'; bootstrap: string }[] };
  };
  files = status.tls;
  mtlsBootstrap = Object.fromEntries(
    status.tls.mtls.map((c) => [c.name, c.bootstrap]),
  ) as typeof mtlsBootstrap;
  const pem = (file: string) => readFileSync(file, 'utf8');
  arns.ca = await createSecret('ca', { certificate: pem(files.caPem) });
  arns.client = await createSecret('client', {
    certificate: pem(files.clientChainPem),
    privateKey: pem(files.clientKeyPem),
  });
  // The same certificate with its key encrypted (PBE-SHA1-3DES), as the event source also takes it.
  arns.clientEncrypted = await createSecret('client-encrypted', {
    certificate: pem(files.clientChainPem),
    privateKey: pem(files.clientKeyEncryptedPem),
    privateKeyPassword: LAB_TLS_PASSWORD,
  });
  // A CA that signed nothing here: what a deploy pointing at the wrong secret would trust.
  const stranger = await createCa(path.join(dir, 'stranger'), 'some other CA');
  arns.wrongCa = await createSecret('wrong-ca', { certificate: pem(stranger) });
  const caFiles = { KDR_PRIMARY_TLS_CA_FILE: files.caPem, KDR_STANDBY_TLS_CA_FILE: files.caPem };
  tlsConfig = loadConfig({ ...labEnv, ...caFiles });
  mtlsConfig = loadConfig({
    ...labEnv,
    ...caFiles,
    KDR_PRIMARY_BROKERS: mtlsBootstrap.primary,
    KDR_STANDBY_BROKERS: mtlsBootstrap.standby,
    KDR_PRIMARY_TLS_CERT_FILE: files.clientChainPem,
    KDR_PRIMARY_TLS_KEY_FILE: files.clientKeyPem,
    KDR_STANDBY_TLS_CERT_FILE: files.clientChainPem,
    KDR_STANDBY_TLS_KEY_FILE: files.clientKeyEncryptedPem,
    KDR_STANDBY_TLS_KEY_PASSWORD: LAB_TLS_PASSWORD,
  });
}, 360_000);

afterAll(async () => {
  secretsClient.destroy();
  await runKdr(['lab', 'down'], { env: labEnv });
});

/** As Lambda gives a function its role's credentials: in the environment (moto takes any). */
const roleCredentials = () => ({
  AWS_ACCESS_KEY_ID: base.aws.credentials!.accessKeyId,
  AWS_SECRET_ACCESS_KEY: base.aws.credentials!.secretAccessKey,
});

/** The stage-local params that point the functions at this lab, over TLS, trusting the CA's secret. */
const tlsParams = (cfg: KdrConfig) => ({
  primaryBootstrap: cfg.primary.brokers.join(','),
  standbyBootstrap: cfg.standby.brokers.join(','),
  primaryTls: 'true',
  standbyTls: 'true',
  primaryRootCaSecretArn: arns.ca,
  standbyRootCaSecretArn: arns.ca,
  awsEndpoint: cfg.aws.endpoint!,
});

async function fill(cfg: KdrConfig, topic: string, perPartition: number): Promise<void> {
  await createTopics('primary', [{ topic, numPartitions: 2 }], cfg);
  const producer = createKafka(cfg.primary, 'kdr-test').producer({ idempotent: true });
  await producer.connect();
  try {
    for (const partition of [0, 1])
      await producer.send({
        topic,
        messages: Array.from({ length: perPartition }, (_, i) => ({
          partition,
          key: `k${partition}-${i}`,
          value: `v${partition}-${i}`,
          headers: { app: `h${i}` },
        })),
      });
  } finally {
    await producer.disconnect();
  }
}

/** The Kafka event the event source would deliver for the whole topic, written to a file for sls. */
async function eventFile(cfg: KdrConfig, topic: string): Promise<string> {
  const reader = new KafkaPartitionReader(createKafka(cfg.primary, 'kdr-test'), 'primary');
  const batches: { topic: string; partition: number; records: SourceRecord[] }[] = [];
  try {
    for (const partition of [0, 1])
      batches.push({ topic, partition, records: await readPartition(reader, { topic, partition }) });
  } finally {
    await reader.close();
  }
  const file = path.join(dir, `${topic}.event.json`);
  writeFileSync(file, JSON.stringify(toKafkaEvent(batches)));
  return file;
}

/** A broker refusing a connection without a client certificate (TLS alert 42, or 116 in TLS 1.3). */
const HANDSHAKE_REFUSED = /alert (bad certificate|certificate required)/;
/** Node refusing a broker whose chain ends in a CA it was not given. */
const UNTRUSTED_CHAIN = /self-signed certificate in certificate chain|unable to (verify|get local issuer)/;

const values = (records: { value: Buffer | null }[]) => records.map((r) => r.value!.toString()).sort();
const expected = (perPartition: number) =>
  [0, 1].flatMap((p) => Array.from({ length: perPartition }, (_, i) => `v${p}-${i}`)).sort();

describe('TLS with a private CA', () => {
  it('mirrors, snapshots and fails over through the functions, the CA in the secret a deploy names', async () => {
    const topic = uniqueName('tls');
    const group = uniqueName('tls-g');
    await fill(tlsConfig, topic, 60);
    await commitGroupOffsets('primary', group, topic, [20, 60], tlsConfig);
    const env = {
      ...roleCredentials(),
      KDR_PAIR: uniqueName('tls-pair'),
      KDR_TOPICS: topic,
      KDR_GROUPS: group,
      KDR_MIRROR_GROUP_ID: uniqueName('tls-m'),
    };
    const params = tlsParams(tlsConfig);

    const mirrored = await invokeLocal('mirror', {
      eventPath: await eventFile(tlsConfig, topic),
      params,
      env,
    });
    expect(mirrored.exitCode, mirrored.stderr.slice(-2000) + mirrored.stdout.slice(-2000)).toBe(0);
    expect(mirrored.result).toMatchObject({ recordsMirrored: 120 });
    // kcat over TLS, trusting the same CA: every record, with the application's header.
    const standby = await readWithKcat('standby', topic, {}, tlsConfig);
    expect(values(standby)).toEqual(expected(60));
    expect(standby.every((r) => r.headers.some(([k]) => k === 'app'))).toBe(true);

    const snapshot = await invokeLocal('snapshot', { data: {}, params, env });
    expect(snapshot.exitCode, snapshot.stderr.slice(-2000) + snapshot.stdout.slice(-2000)).toBe(0);
    expect(snapshot.result).toMatchObject({ status: 'complete', records: 120 });

    const failover = await invokeLocal('failover', { data: { mode: 'planned' }, params, env });
    expect(failover.exitCode, failover.stderr.slice(-2000) + failover.stdout.slice(-2000)).toBe(0);
    expect(failover.result).toMatchObject({ mode: 'planned', from: 'primary', to: 'standby', epoch: 2 });
    expect((failover.result as { rpo: { records: number } }).rpo.records).toBe(0);
    // Kafka's own tool over TLS (a PEM truststore) sees the group on the standby where it was.
    const props = path.join(dir, 'client-tls.properties');
    writeFileSync(
      props,
      `security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=${files.caPem}\n`,
    );
    const moved = await describeGroup('standby', group, topic, { cfg: tlsConfig, commandConfig: props });
    expect([...moved.entries()].sort()).toEqual([
      [0, 20],
      [1, 60],
    ]);
  });

  it('a wrong CA fails naming the cluster, from the CLI and from a function', async () => {
    const topic = uniqueName('tls-wrong');
    await fill(tlsConfig, topic, 5);
    const env = {
      ...labEnv,
      KDR_PAIR: uniqueName('tls-pair'),
      KDR_TOPICS: topic,
      KDR_PRIMARY_TLS_CA_SECRET_ARN: arns.wrongCa,
      KDR_STANDBY_TLS_CA_SECRET_ARN: arns.ca,
    };
    const cli = await runKdr(['mirror', '--until-caught-up', '--json'], { env, timeoutMs: 120_000 });
    expect(cli.exitCode).not.toBe(0);
    expect(cli.stderr).toContain('connecting to the primary cluster failed');
    expect(cli.stderr).toMatch(UNTRUSTED_CHAIN);

    const fn = await invokeLocal('mirror', {
      eventPath: await eventFile(tlsConfig, topic),
      params: { ...tlsParams(tlsConfig), standbyRootCaSecretArn: arns.wrongCa },
      env: { ...roleCredentials(), KDR_PAIR: env.KDR_PAIR, KDR_TOPICS: topic },
    });
    expect(fn.exitCode).not.toBe(0);
    expect(fn.stdout + fn.stderr).toMatch(/standby cluster/);
    expect(fn.stdout + fn.stderr).toMatch(UNTRUSTED_CHAIN);
  });
});

describe('mTLS: the event source client certificate serves kdr clients too', () => {
  /** Both clusters require a client certificate: the primary's is the event source's secret. */
  const mtlsParams = () => ({
    ...tlsParams(mtlsConfig),
    primaryAuthType: 'clientCertificateTlsAuth',
    primarySecretArn: arns.client,
    standbyClientCertSecretArn: arns.clientEncrypted,
  });

  it('mirrors (re-reading the primary), snapshots and fails over through the functions', async () => {
    const topic = uniqueName('mtls');
    const group = uniqueName('mtls-g');
    await fill(mtlsConfig, topic, 30);
    await commitGroupOffsets('primary', group, topic, [10, 30], mtlsConfig);
    const env = {
      ...roleCredentials(),
      KDR_PAIR: uniqueName('mtls-pair'),
      KDR_TOPICS: topic,
      KDR_GROUPS: group,
      KDR_MIRROR_GROUP_ID: uniqueName('mtls-m'),
      // Re-read each batch from the primary, so the function's primary client proves its certificate too.
      KDR_MIRROR_LAMBDA_REFETCH: 'true',
    };
    const event = await eventFile(mtlsConfig, topic);
    // Control: the same invocation without the primary's client certificate (stage local's default
    // authentication gives kdr none) is refused by the primary's mTLS listener, and says so.
    const withoutCertificate = await invokeLocal('mirror', {
      eventPath: event,
      params: { ...mtlsParams(), primaryAuthType: 'saslScram512Auth' },
      env,
    });
    expect(withoutCertificate.exitCode).not.toBe(0);
    expect(withoutCertificate.stdout + withoutCertificate.stderr).toMatch(/primary cluster/);
    expect(withoutCertificate.stdout + withoutCertificate.stderr).toMatch(HANDSHAKE_REFUSED);

    const params = mtlsParams();
    const mirrored = await invokeLocal('mirror', { eventPath: event, params, env });
    expect(mirrored.exitCode, mirrored.stderr.slice(-2000) + mirrored.stdout.slice(-2000)).toBe(0);
    expect(mirrored.result).toMatchObject({ recordsMirrored: 60 });
    expect(values(await readWithKcat('standby', topic, {}, mtlsConfig))).toEqual(expected(30));
    expect(mirrored.stdout + mirrored.stderr).not.toContain('PRIVATE KEY');

    const snapshot = await invokeLocal('snapshot', { data: {}, params, env });
    expect(snapshot.exitCode, snapshot.stderr.slice(-2000) + snapshot.stdout.slice(-2000)).toBe(0);
    expect(snapshot.result).toMatchObject({ status: 'complete', records: 60 });

    const failover = await invokeLocal('failover', { data: { mode: 'planned' }, params, env });
    expect(failover.exitCode, failover.stderr.slice(-2000) + failover.stdout.slice(-2000)).toBe(0);
    const report = failover.result as {
      from: string;
      to: string;
      rpo: { records: number };
      groups: Record<string, { partition: number; standbyOffset: number }[]>;
    };
    expect(report).toMatchObject({ from: 'primary', to: 'standby', rpo: { records: 0 } });
    expect(report.groups[group]!.map((g) => [g.partition, g.standbyOffset]).sort()).toEqual([
      [0, 10],
      [1, 30],
    ]);
  });

  it('the CLI without a client certificate is refused by the mTLS listener, naming the cluster', async () => {
    const refused = await runKdr(['mirror', '--until-caught-up', '--json'], {
      env: {
        ...labEnv,
        KDR_PAIR: uniqueName('mtls-pair'),
        KDR_TOPICS: uniqueName('mtls-none'),
        KDR_PRIMARY_BROKERS: mtlsBootstrap.primary,
        KDR_PRIMARY_TLS_CA_FILE: files.caPem,
        KDR_STANDBY_TLS_CA_FILE: files.caPem,
      },
      timeoutMs: 120_000,
    });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('connecting to the primary cluster failed');
    expect(refused.stderr).toMatch(HANDSHAKE_REFUSED);
  });

  it('kdr config shows what the certificates are, never the private key', async () => {
    const shown = await runKdr(['config', '--json'], {
      env: {
        ...labEnv,
        KDR_PRIMARY_TLS_CA_FILE: files.caPem,
        KDR_PRIMARY_TLS_CERT_FILE: files.clientChainPem,
        KDR_PRIMARY_TLS_KEY_FILE: files.clientKeyPem,
      },
    });
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout).primary).toMatchObject({
      ssl: true,
      tls: { ca: '1 PEM certificate(s)', cert: '2 PEM certificate(s)', key: '***' },
    });
    expect(shown.stdout + shown.stderr).not.toContain('PRIVATE KEY');
  });
});
