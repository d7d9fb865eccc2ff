import { ListStackResourcesCommand, type StackResourceSummary } from '@aws-sdk/client-cloudformation';
import {
  DescribeContinuousBackupsCommand,
  DescribeTableCommand,
  DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { GetRoleCommand, IAMClient, ListAttachedRolePoliciesCommand } from '@aws-sdk/client-iam';
import { GetFunctionConfigurationCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { GetBucketEncryptionCommand, GetBucketVersioningCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { packageStack } from '../../infra/aws/packageStack.ts';
import { buildFunctions } from '../../infra/build.ts';
import { deployToMoto, type MotoDeployment, motoClients } from '../../infra/local/deployToMoto.ts';
import { config, uniqueName } from '../helpers/lab.ts';

/**
 * The packaged stack deployed into the lab's moto through CloudFormation, as osls deploys it (create,
 * upload, update), and every resource checked to exist with its properties. What moto's CloudFormation
 * cannot create is named, not silently passed.
 */

const endpoint = config.aws.endpoint!;
const clients = motoClients(endpoint);
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const common = { endpoint, region: 'us-east-1', credentials };
const dynamodb = new DynamoDBClient(common);
const lambda = new LambdaClient(common);
const iam = new IAMClient(common);
const stage = uniqueName('moto')
  .replace(/[^a-z0-9-]/g, '')
  .slice(0, 20);
let deployment: MotoDeployment;
let resources: StackResourceSummary[];

beforeAll(async () => {
  await buildFunctions();
  const { dir } = await packageStack({
    stage,
    params: ['topics=orders,payments'],
    prebuilt: true,
    prefix: 'kdr-moto-deploy-',
  });
  deployment = await deployToMoto(clients, dir, `kdr-${stage}`);
  resources = (
    await clients.cloudformation.send(new ListStackResourcesCommand({ StackName: deployment.stackName }))
  ).StackResourceSummaries!;
}, 300_000);

afterAll(() => {
  for (const c of [clients.cloudformation, clients.s3, dynamodb, lambda, iam]) c.destroy();
});

/** Resource types of the template that moto's CloudFormation skips (it warns and creates nothing). */
const MOTO_LACKS = [
  'AWS::S3::BucketPolicy',
  'AWS::Lambda::EventInvokeConfig',
  'AWS::CloudWatch::Alarm',
  'AWS::SNS::Subscription',
];

it('creates every resource moto supports; names the types it lacks', () => {
  const created = new Map(resources.map((r) => [r.LogicalResourceId!, r]));
  const expected = Object.entries(deployment.template.Resources).filter(
    ([, r]) => !MOTO_LACKS.includes(r.Type) && r.Type !== 'AWS::Lambda::EventSourceMapping',
  );
  const missing = expected.filter(([id]) => !created.has(id)).map(([id, r]) => `${id} (${r.Type})`);
  expect(missing).toEqual([]);
  for (const [id] of expected) expect(created.get(id)!.ResourceStatus, id).toMatch(/_COMPLETE$/);
  // What this deployment could not prove on moto, by type: the alarms, the bucket policies, the async
  // invoke configs (retries 0) and the two Kafka event sources are checked on the template instead.
  const lacked = [...new Set(Object.values(deployment.template.Resources).map((r) => r.Type))].filter((t) =>
    MOTO_LACKS.includes(t),
  );
  expect(lacked.sort()).toEqual([
    'AWS::CloudWatch::Alarm',
    'AWS::Lambda::EventInvokeConfig',
    'AWS::S3::BucketPolicy',
  ]);
  expect(deployment.leftOut['AWS::Lambda::EventSourceMapping']?.sort()).toEqual([
    'MirrorEventSourceMappingKafkaOrders',
    'MirrorEventSourceMappingKafkaPayments',
  ]);
});

/**
 * Each property the template sets, read back through the service's own API. moto's CloudFormation
 * does not carry every property over; those are listed exactly, so that a property lost here is either
 * one of them or a failure.
 */
const MOTO_DROPS = [
  'OffsetTable SSESpecification',
  'StateTable SSESpecification',
  'OffsetTable PointInTimeRecoverySpecification',
  'StateTable PointInTimeRecoverySpecification',
  ...['Checkpoint', 'Snapshot', 'Failover', 'Failback', 'Restore'].map(
    (f) => `${f}LambdaFunction DeadLetterConfig`,
  ),
  'SnapshotBucket VersioningConfiguration',
  'MirrorRole ManagedPolicyArns',
  'CheckpointRole ManagedPolicyArns',
  'SnapshotRole ManagedPolicyArns',
  'FailoverRole ManagedPolicyArns',
  'FailbackRole ManagedPolicyArns',
  'RestoreRole ManagedPolicyArns',
  'StatusRole ManagedPolicyArns',
  ...['Mirror', 'Checkpoint', 'Snapshot', 'Failover', 'Failback', 'Restore', 'Status'].map(
    (f) => `${f}LambdaFunction Architectures`,
  ),
];

it('every property read back matches the template, except those moto drops (listed)', async () => {
  const lost: string[] = [];
  const check = (id: string, property: string, ok: boolean) => {
    if (!ok) lost.push(`${id} ${property}`);
  };
  const physical = (id: string) => resources.find((r) => r.LogicalResourceId === id)!.PhysicalResourceId!;
  for (const [id, name] of [
    ['OffsetTable', `kdr-${stage}-offsets`],
    ['StateTable', `kdr-${stage}-state`],
  ] as const) {
    const table = (await dynamodb.send(new DescribeTableCommand({ TableName: name }))).Table!;
    check(id, 'BillingMode', table.BillingModeSummary?.BillingMode === 'PAY_PER_REQUEST');
    check(id, 'DeletionProtectionEnabled', table.DeletionProtectionEnabled === true);
    check(id, 'SSESpecification', table.SSEDescription?.SSEType === 'KMS');
    const backups = await dynamodb.send(new DescribeContinuousBackupsCommand({ TableName: name }));
    check(
      id,
      'PointInTimeRecoverySpecification',
      backups.ContinuousBackupsDescription?.PointInTimeRecoveryDescription?.PointInTimeRecoveryStatus ===
        'ENABLED',
    );
  }
  const bucket = physical('SnapshotBucket');
  const versioning = await clients.s3.send(new GetBucketVersioningCommand({ Bucket: bucket }));
  check('SnapshotBucket', 'VersioningConfiguration', versioning.Status === 'Enabled');
  const encryption = await clients.s3
    .send(new GetBucketEncryptionCommand({ Bucket: bucket }))
    .catch(() => undefined);
  check(
    'SnapshotBucket',
    'BucketEncryption',
    encryption?.ServerSideEncryptionConfiguration?.Rules?.[0]?.ApplyServerSideEncryptionByDefault
      ?.SSEAlgorithm === 'aws:kms',
  );
  const functions = Object.entries(deployment.template.Resources).filter(
    ([, r]) => r.Type === 'AWS::Lambda::Function',
  );
  expect(functions.length).toBe(7);
  for (const [id, r] of functions) {
    const p = r.Properties as {
      FunctionName: string;
      Handler: string;
      MemorySize: number;
      Timeout: number;
      Role: { 'Fn::GetAtt': [string, string] };
      DeadLetterConfig?: unknown;
    };
    const fn = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: p.FunctionName }));
    check(id, 'Runtime', fn.Runtime === 'nodejs22.x');
    check(id, 'Handler', fn.Handler === p.Handler);
    check(id, 'MemorySize', fn.MemorySize === p.MemorySize);
    check(id, 'Timeout', fn.Timeout === p.Timeout);
    check(id, 'Architectures', fn.Architectures?.[0] === 'arm64');
    check(id, 'Environment', fn.Environment?.Variables?.KDR_STATE_TABLE === `kdr-${stage}-state`);
    const role = await iam.send(new GetRoleCommand({ RoleName: physical(p.Role['Fn::GetAtt'][0]) }));
    check(id, 'Role', fn.Role === role.Role!.Arn);
    // Status (invoked synchronously only) and the mirror (its event source retries) have no queue.
    check(
      id,
      'DeadLetterConfig',
      p.DeadLetterConfig
        ? new RegExp(`:kdr-${stage}-dead-letters$`).test(fn.DeadLetterConfig?.TargetArn ?? '')
        : fn.DeadLetterConfig?.TargetArn === undefined,
    );
  }
  for (const role of resources.filter((r) => r.ResourceType === 'AWS::IAM::Role')) {
    const attached = await iam.send(
      new ListAttachedRolePoliciesCommand({ RoleName: role.PhysicalResourceId! }),
    );
    const arns = (attached.AttachedPolicies ?? []).map((a) => a.PolicyArn!);
    const wanted = (
      (
        deployment.template.Resources[role.LogicalResourceId!]!.Properties as {
          ManagedPolicyArns?: unknown[];
        }
      ).ManagedPolicyArns ?? []
    ).length;
    check(role.LogicalResourceId!, 'ManagedPolicyArns', arns.length === wanted);
  }
  expect(lost.sort()).toEqual([...MOTO_DROPS].sort());
});
