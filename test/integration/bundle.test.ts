import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { packageStack } from '../../infra/aws/packageStack.ts';
import { buildFunctions } from '../../infra/build.ts';
import { toKafkaEvent } from '../../src/events/kafkaEvent.ts';
import { config, createTopics, kafkaFor, readWithKcat, uniqueName } from '../helpers/lab.ts';

/**
 * The Lambda bundles run on their own: copied away from the repository (no node_modules to fall back
 * on) and invoked with plain node, as the Lambda runtime would.
 */

let bundles: string;
// biome-ignore lint/suspicious/noExplicitAny: a CloudFormation template, read for a few known paths
let template: { Resources: Record<string, { Type: string; Properties: any }> };

/**
 * The stack exactly as `sls package` writes it, offline and without AWS credentials: each function's
 * zip is unpacked into a directory of its own (no node_modules to fall back on) and invoked from there.
 */
beforeAll(async () => {
  await buildFunctions();
  const { dir: packaged, templatePath } = await packageStack();
  template = JSON.parse(readFileSync(templatePath, 'utf8'));
  bundles = mkdtempSync(path.join(os.tmpdir(), 'kdr-bundle-'));
  for (const zip of readdirSync(packaged).filter((f) => f.endsWith('.zip'))) {
    const name = zip.replace(/\.zip$/, '');
    await execa('unzip', ['-q', path.join(packaged, zip), '-d', path.join(bundles, name)]);
  }
}, 180_000);

async function invoke(name: string, event: unknown, env: Record<string, string> = {}) {
  const script = path.join(bundles, `invoke-${name}.cjs`);
  writeFileSync(
    script,
    `require('./${name}/.build/${name}/index.js').handler(JSON.parse(process.argv[2]))
      .then((r) => { process.stdout.write('\\n' + JSON.stringify(r) + '\\n'); process.exit(0); }, (e) => { process.stderr.write('FAILED ' + e.name + ': ' + e.message); process.exit(1); });`,
  );
  return execa(process.execPath, [script, JSON.stringify(event)], {
    cwd: bundles,
    reject: false,
    timeout: 120_000,
    env: {
      PATH: process.env.PATH,
      // The deployed name (stage local): a continuation invokes exactly this function.
      AWS_LAMBDA_FUNCTION_NAME: `kdr-local-${name}`,
      AWS_REGION: config.aws.region,
      AWS_ENDPOINT_URL: config.aws.endpoint!,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      KDR_PRIMARY_BROKERS: config.primary.brokers.join(','),
      KDR_STANDBY_BROKERS: config.standby.brokers.join(','),
      // The packaged functions' AWS calls count in the suite's IAM check too.
      ...(process.env.KDR_AWS_CALL_LOG ? { KDR_AWS_CALL_LOG: process.env.KDR_AWS_CALL_LOG } : {}),
      ...env,
    },
    extendEnv: false,
  });
}

describe('the packaged stack', () => {
  it('gives every function a role of its own, with no wildcard action and resources scoped to the stack', () => {
    const resources = Object.entries(template.Resources);
    const functions = resources.filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    expect(functions.map(([id]) => id).sort()).toEqual(
      ['Checkpoint', 'Failback', 'Failover', 'Mirror', 'Restore', 'Snapshot', 'Status'].map(
        (n) => `${n}LambdaFunction`,
      ),
    );
    const roles = functions.map(
      ([, f]) => (f.Properties.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0],
    );
    expect(new Set(roles).size).toBe(functions.length);
    for (const [, f] of functions) expect(f.Properties.Runtime).toBe('nodejs22.x');
    const statements = resources
      .filter(([, r]) => r.Type === 'AWS::IAM::Role')
      .flatMap(([id, r]) =>
        (r.Properties.Policies as { PolicyDocument: { Statement: Record<string, unknown>[] } }[]).flatMap(
          (p) => p.PolicyDocument.Statement.map((st): Record<string, unknown> => ({ role: id, ...st })),
        ),
      );
    expect(statements.length).toBeGreaterThan(30);
    for (const st of statements) {
      const actions = ([] as string[]).concat(st.Action as string | string[]);
      for (const action of actions)
        expect(action, `${st.role} ${st.Sid}`).toMatch(/^[a-z0-9-]+:[A-Za-z]+\*?$/);
      expect(
        actions.some((a) => a === '*' || a.endsWith(':*')),
        `${st.role} ${st.Sid}`,
      ).toBe(false);
      // A resource wildcard only where the API has no resource-level permissions (listing).
      if (st.Resource === '*')
        expect(actions, `${st.role} ${st.Sid}`).toEqual(['lambda:ListEventSourceMappings']);
    }
    // The bucket: KMS-encrypted, TLS only; the tables: the stack's key, point-in-time recovery.
    const bucket = template.Resources.SnapshotBucket!.Properties;
    expect(
      bucket.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm,
    ).toBe('aws:kms');
    const policy = template.Resources.SnapshotBucketPolicy!.Properties.PolicyDocument;
    expect(policy.Statement).toContainEqual(
      expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    );
    for (const table of ['OffsetTable', 'StateTable']) {
      const props = template.Resources[table]!.Properties;
      expect(props.SSESpecification).toMatchObject({ SSEEnabled: true, SSEType: 'KMS' });
      expect(props.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    }
  });
});

describe('the packaged stack with cross-region state', () => {
  it('makes the tables global tables and replicates the snapshot bucket when the params ask for it', async () => {
    const { templatePath } = await packageStack({
      params: [
        'replicaRegions=eu-central-1,us-west-2',
        'replicaBucketArn=arn:aws:s3:::kdr-dr-replica',
        'replicaKmsKeyArn=arn:aws:kms:us-west-2:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
      ],
      prefix: 'kdr-package-xr-',
    });
    const t = JSON.parse(readFileSync(templatePath, 'utf8'));
    for (const table of ['OffsetTable', 'StateTable']) {
      expect(t.Resources[table].Type).toBe('AWS::DynamoDB::GlobalTable');
      expect(t.Resources[table].Properties.Replicas.map((r: { Region: unknown }) => r.Region)).toEqual([
        { Ref: 'AWS::Region' },
        'eu-central-1',
        'us-west-2',
      ]);
    }
    // Same keys and index as the lab's tables (state.yml is the one definition).
    expect(t.Resources.OffsetTable.Properties.GlobalSecondaryIndexes[0].IndexName).toBe('byStandbyOffset');
    const rule = t.Resources.SnapshotBucket.Properties.ReplicationConfiguration.Rules[0];
    expect(rule.Destination.Bucket).toBe('arn:aws:s3:::kdr-dr-replica');
    // Replicas are encrypted with the key named for the destination region, not a bare alias.
    expect(rule.Destination.EncryptionConfiguration.ReplicaKmsKeyID).toBe(
      'arn:aws:kms:us-west-2:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
    );
    expect(t.Resources.SnapshotReplicationRole.Type).toBe('AWS::IAM::Role');
  });
});

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

  it('status: runs from its bundle alone', async () => {
    const pair = uniqueName('bundle-pair');
    const result = await invoke('status', {}, { KDR_PAIR: pair, KDR_TOPICS: uniqueName('no-such-topic') });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.trim().split('\n').at(-1)!)).toMatchObject({
      pair,
      control: { state: 'MIRRORING', epoch: 0 },
      partitions: [],
    });
  });

  it('mirror: rejects a malformed event from its bundle', async () => {
    const result = await invoke('mirror', { eventSource: 'nope' });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('FAILED EventError: malformed Kafka event at eventSource');
  });
});
