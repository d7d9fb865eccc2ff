import { evaluate, functionRoles, type Resource, type Stack } from './stackIam.ts';

/**
 * What Lambda itself needs from a function's role and configuration, beyond the calls kdr's code makes,
 * checked on a resolved template. Each rule cites the AWS page it follows. A finding names the function
 * (or resource), the action and the resource, so that a missing permission is found before a deploy
 * rolls back.
 */

export interface Finding {
  rule: string;
  subject: string;
  message: string;
}

type Check = (stack: Stack) => Promise<Finding[]>;

const DOCS = {
  dlq: 'https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html',
  sqsKms:
    'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html',
  kafkaOnFailure: 'https://docs.aws.amazon.com/lambda/latest/dg/kafka-retry-configurations.html',
  kafkaGroup: 'https://docs.aws.amazon.com/lambda/latest/dg/kafka-consumer-group-id.html',
  kafkaPermissions: 'https://docs.aws.amazon.com/lambda/latest/dg/with-kafka-permissions.html',
  mskPermissions: 'https://docs.aws.amazon.com/lambda/latest/dg/with-msk-permissions.html',
  vpc: 'https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-permissions',
  logs: 'https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html',
  recursion: 'https://docs.aws.amazon.com/lambda/latest/dg/invocation-recursion.html',
  asyncRetries: 'https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html',
  envKms: 'https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html',
  s3ReplicationKms:
    'https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html',
  retain: 'https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html',
};

const of = <T>(resource: Resource | undefined) => (resource?.Properties ?? {}) as T;

function byType(stack: Stack, type: string): [string, Resource][] {
  return Object.entries(stack.resources).filter(([, r]) => r.Type === type);
}

/** The function an event source mapping or invoke config belongs to (logical id). */
function functionOf(stack: Stack, nameOrArn: string): string | undefined {
  const name = nameOrArn.includes(':function:') ? nameOrArn.split(':function:')[1]! : nameOrArn;
  return byType(stack, 'AWS::Lambda::Function').find(
    ([, r]) => of<{ FunctionName: string }>(r).FunctionName === name.split(':')[0],
  )?.[0];
}

async function requireAllowed(
  stack: Stack,
  rule: string,
  fn: string,
  action: string,
  resource: string,
  why: string,
  context: Record<string, string | string[]> = {},
): Promise<Finding[]> {
  const role = functionRoles(stack)[fn]!;
  const decision = await evaluate(stack, role, action, resource, context);
  if (decision.allowed) return [];
  return [
    {
      rule,
      subject: fn,
      message: `${fn} (role ${role}) is not allowed ${action} on ${resource} (${decision.detail}): ${why}`,
    },
  ];
}

/** The queue's key, when it is encrypted with a KMS key of the stack. */
function queueKeyArn(stack: Stack, queueArn: string): string | undefined {
  const queue = byType(stack, 'AWS::SQS::Queue').find(([, r]) =>
    queueArn.endsWith(`:${of<{ QueueName: string }>(r).QueueName}`),
  )?.[1];
  const keyId = of<{ KmsMasterKeyId?: string }>(queue).KmsMasterKeyId;
  if (!keyId) return undefined;
  return `arn:aws:kms:${stack.region}:${stack.accountId}:key/${keyId}`;
}

async function sendsToQueue(stack: Stack, rule: string, fn: string, queueArn: string, doc: string) {
  const findings = await requireAllowed(stack, rule, fn, 'sqs:SendMessage', queueArn, doc);
  const key = queueKeyArn(stack, queueArn);
  if (key)
    for (const action of ['kms:GenerateDataKey', 'kms:Decrypt'])
      findings.push(...(await requireAllowed(stack, rule, fn, action, key, DOCS.sqsKms)));
  return findings;
}

const deadLetterQueues: Check = async (stack) => {
  const findings: Finding[] = [];
  for (const [fn, r] of byType(stack, 'AWS::Lambda::Function')) {
    const target = of<{ DeadLetterConfig?: { TargetArn: string } }>(r).DeadLetterConfig?.TargetArn;
    if (target) findings.push(...(await sendsToQueue(stack, 'dead-letter-queue', fn, target, DOCS.dlq)));
  }
  return findings;
};

interface MappingProps {
  FunctionName: string;
  EventSourceArn?: string;
  Topics: string[];
  SourceAccessConfigurations?: { Type: string; URI: string }[];
  DestinationConfig?: { OnFailure?: { Destination: string } };
  SelfManagedKafkaEventSourceConfig?: { ConsumerGroupId?: string };
  AmazonManagedKafkaEventSourceConfig?: { ConsumerGroupId?: string };
}

const SECRET_TYPES = [
  'SASL_SCRAM_512_AUTH',
  'SASL_SCRAM_256_AUTH',
  'BASIC_AUTH',
  'CLIENT_CERTIFICATE_TLS_AUTH',
  'SERVER_ROOT_CA_CERTIFICATE',
];
const EVENT_SOURCE_EC2 = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeVpcs',
  'ec2:DeleteNetworkInterface',
  'ec2:DescribeSubnets',
  'ec2:DescribeSecurityGroups',
];

const eventSources: Check = async (stack) => {
  const findings: Finding[] = [];
  const groups = new Map<string, string>();
  for (const [id, r] of byType(stack, 'AWS::Lambda::EventSourceMapping')) {
    const p = of<MappingProps>(r);
    const fn = functionOf(stack, p.FunctionName);
    if (!fn) {
      findings.push({
        rule: 'event-source',
        subject: id,
        message: `${id} invokes no function of this stack`,
      });
      continue;
    }
    const group =
      p.SelfManagedKafkaEventSourceConfig?.ConsumerGroupId ??
      p.AmazonManagedKafkaEventSourceConfig?.ConsumerGroupId;
    if (!group) {
      findings.push({
        rule: 'event-source-group',
        subject: id,
        message: `${id} has no consumer group id (${DOCS.kafkaGroup})`,
      });
    } else if (groups.has(group)) {
      findings.push({
        rule: 'event-source-group',
        subject: id,
        message: `${id} and ${groups.get(group)} share consumer group ${group}: it must be unique among Kafka event sources (${DOCS.kafkaGroup})`,
      });
    } else groups.set(group, id);
    const access = p.SourceAccessConfigurations ?? [];
    const msk = p.EventSourceArn?.startsWith('arn:aws:kafka:') ?? false;
    const doc = msk ? DOCS.mskPermissions : DOCS.kafkaPermissions;
    for (const a of access.filter((x) => SECRET_TYPES.includes(x.Type)))
      findings.push(
        ...(await requireAllowed(
          stack,
          'event-source-secret',
          fn,
          'secretsmanager:GetSecretValue',
          a.URI,
          doc,
        )),
      );
    if (msk || access.some((a) => a.Type === 'VPC_SUBNET'))
      for (const action of EVENT_SOURCE_EC2)
        findings.push(...(await requireAllowed(stack, 'event-source-vpc', fn, action, '*', doc)));
    if (msk) {
      const cluster = p.EventSourceArn!;
      for (const action of ['kafka:DescribeClusterV2', 'kafka:GetBootstrapBrokers'])
        findings.push(...(await requireAllowed(stack, 'event-source-msk', fn, action, cluster, doc)));
      if (!access.some((a) => a.Type.startsWith('SASL_') || a.Type === 'CLIENT_CERTIFICATE_TLS_AUTH')) {
        // No secret: IAM access control, with the execution role's kafka-cluster permissions (an MSK
        // cluster open to unauthenticated clients, mskAuthType=none, would be flagged here too).
        const under = (kind: string, name: string) => `${cluster.replace(':cluster/', `:${kind}/`)}/${name}`;
        const wants: [string, string][] = [
          ['kafka-cluster:Connect', cluster],
          ['kafka-cluster:DescribeClusterDynamicConfiguration', cluster],
          ...p.Topics.flatMap((t): [string, string][] => [
            ['kafka-cluster:DescribeTopic', under('topic', t)],
            ['kafka-cluster:ReadData', under('topic', t)],
          ]),
          ...(group
            ? ([
                ['kafka-cluster:DescribeGroup', under('group', group)],
                ['kafka-cluster:AlterGroup', under('group', group)],
              ] as [string, string][])
            : []),
        ];
        for (const [action, resource] of wants)
          findings.push(...(await requireAllowed(stack, 'event-source-msk-iam', fn, action, resource, doc)));
      }
    }
    // No on-failure destination: with one, Lambda caps the retries of a failing batch at 10 and then
    // skips it. kdr wants the batch retried until it is mirrored (a standby outage must stall the
    // mirror, never skip records).
    if (p.DestinationConfig?.OnFailure?.Destination)
      findings.push({
        rule: 'event-source-on-failure',
        subject: id,
        message: `${id} has an on-failure destination: Lambda would then retry a failing batch at most 10 times and skip it (${DOCS.kafkaOnFailure})`,
      });
  }
  return findings;
};

const CLIENT_SECRET_VARIABLES = ['PRIMARY', 'STANDBY'].flatMap((c) =>
  ['SASL_SECRET_ARN', 'TLS_CA_SECRET_ARN', 'TLS_CLIENT_SECRET_ARN'].map((v) => `KDR_${c}_${v}`),
);

const functionBasics: Check = async (stack) => {
  const findings: Finding[] = [];
  for (const [fn, r] of byType(stack, 'AWS::Lambda::Function')) {
    const p = of<{
      FunctionName: string;
      KmsKeyArn?: string;
      VpcConfig?: { SubnetIds?: string[] };
      Environment?: { Variables?: Record<string, string> };
    }>(r);
    // The SASL credentials and TLS material kdr's own clients read (src/secrets.ts, at the first invocation).
    for (const name of CLIENT_SECRET_VARIABLES) {
      const arn = p.Environment?.Variables?.[name];
      if (arn)
        findings.push(
          ...(await requireAllowed(
            stack,
            'client-secret',
            fn,
            'secretsmanager:GetSecretValue',
            arn,
            `${name} names it`,
          )),
        );
    }
    const logGroup = `arn:aws:logs:${stack.region}:${stack.accountId}:log-group:/aws/lambda/${p.FunctionName}:log-stream:x`;
    for (const action of ['logs:CreateLogStream', 'logs:PutLogEvents'])
      findings.push(...(await requireAllowed(stack, 'logs', fn, action, logGroup, DOCS.logs)));
    if (p.KmsKeyArn)
      findings.push(
        ...(await requireAllowed(stack, 'environment-key', fn, 'kms:Decrypt', p.KmsKeyArn, DOCS.envKms)),
      );
    if ((p.VpcConfig?.SubnetIds ?? []).length > 0)
      for (const action of [
        'ec2:CreateNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:DeleteNetworkInterface',
        'ec2:AssignPrivateIpAddresses',
        'ec2:UnassignPrivateIpAddresses',
      ])
        findings.push(...(await requireAllowed(stack, 'vpc', fn, action, '*', DOCS.vpc)));
  }
  return findings;
};

/** Functions that continue themselves: allowed to, not stopped as a loop, not retried by Lambda. */
export const SELF_INVOKING = ['FailoverLambdaFunction', 'FailbackLambdaFunction', 'RestoreLambdaFunction'];

const selfInvocation: Check = async (stack) => {
  const findings: Finding[] = [];
  const configs = byType(stack, 'AWS::Lambda::EventInvokeConfig').map(([, r]) =>
    of<{ FunctionName: string; MaximumRetryAttempts?: number }>(r),
  );
  for (const fn of SELF_INVOKING) {
    const p = of<{ FunctionName: string; RecursiveLoop?: string }>(stack.resources[fn]);
    const arn = `arn:aws:lambda:${stack.region}:${stack.accountId}:function:${p.FunctionName}`;
    findings.push(
      ...(await requireAllowed(stack, 'self-invocation', fn, 'lambda:InvokeFunction', arn, DOCS.recursion)),
    );
    if (p.RecursiveLoop !== 'Allow')
      findings.push({
        rule: 'self-invocation',
        subject: fn,
        message: `${fn} invokes itself but RecursiveLoop is ${p.RecursiveLoop ?? 'unset (Terminate)'}: Lambda may stop it as a loop (${DOCS.recursion})`,
      });
    const retries = configs.find((c) => c.FunctionName === p.FunctionName)?.MaximumRetryAttempts;
    if (retries !== 0)
      findings.push({
        rule: 'async-retries',
        subject: fn,
        message: `${fn} would be retried by Lambda after a failed asynchronous invocation (MaximumRetryAttempts ${retries ?? 'unset: 2'}): an operation must run again only when asked (${DOCS.asyncRetries})`,
      });
  }
  return findings;
};

const replication: Check = async (stack) => {
  const findings: Finding[] = [];
  for (const [id, r] of byType(stack, 'AWS::S3::Bucket')) {
    const config = of<{
      ReplicationConfiguration?: {
        Role: string;
        Rules: { Destination: { EncryptionConfiguration?: { ReplicaKmsKeyID: string } } }[];
      };
    }>(r).ReplicationConfiguration;
    if (!config) continue;
    const role = config.Role.slice(config.Role.lastIndexOf('/') + 1);
    for (const rule of config.Rules) {
      const key = rule.Destination.EncryptionConfiguration?.ReplicaKmsKeyID;
      if (!key) continue;
      if (!/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\//.test(key))
        findings.push({
          rule: 's3-replication-kms',
          subject: id,
          message: `${id} replicates with ReplicaKmsKeyID ${key}: S3 needs the ARN of a key in the destination region (${DOCS.s3ReplicationKms})`,
        });
      else {
        const decision = await evaluate(stack, role, 'kms:Encrypt', key);
        if (!decision.allowed)
          findings.push({
            rule: 's3-replication-kms',
            subject: id,
            message: `${role} is not allowed kms:Encrypt on ${key} (${decision.detail}): replicas could not be encrypted (${DOCS.s3ReplicationKms})`,
          });
      }
    }
  }
  return findings;
};

/** What kdr recovers from survives `sls remove` and a replacement. */
const RETAINED = ['KdrKey', 'OffsetTable', 'StateTable', 'SnapshotBucket'];
const retained: Check = async (stack) =>
  RETAINED.filter(
    (id) =>
      stack.resources[id]?.DeletionPolicy !== 'Retain' ||
      stack.resources[id]?.UpdateReplacePolicy !== 'Retain',
  ).map((id) => ({
    rule: 'retain',
    subject: id,
    message: `${id} is not kept on stack deletion and replacement (DeletionPolicy/UpdateReplacePolicy Retain) (${DOCS.retain})`,
  }));

export const RULES: Record<string, Check> = {
  deadLetterQueues,
  eventSources,
  functionBasics,
  selfInvocation,
  replication,
  retained,
};

export async function checkLambdaRules(stack: Stack): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const check of Object.values(RULES)) findings.push(...(await check(stack)));
  return findings;
}
