import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { deniedCalls } from '../../infra/aws/awsCalls.ts';
import { checkLambdaRules, RULES } from '../../infra/aws/lambdaRules.ts';
import { packageStack, tryPackageStack } from '../../infra/aws/packageStack.ts';
import { loadStack, resolveStack, roleOfFunction, type Stack } from '../../infra/aws/stackIam.ts';
import { buildFunctions } from '../../infra/build.ts';
import { REPO_ROOT } from '../../infra/local/paths.ts';

/**
 * The packaged stack of every deployment variant (infra/aws/variants.json), offline and without AWS
 * credentials, checked for what Lambda itself needs (infra/aws/lambdaRules.ts: dead-letter queues,
 * event sources, VPC, logs, self-invocation, replication keys, retained state) with an IAM policy
 * simulator, not by string matching.
 */

const variants = JSON.parse(readFileSync(path.join(REPO_ROOT, 'infra/aws/variants.json'), 'utf8')) as Record<
  string,
  string[]
>;
const names = Object.keys(variants).filter((k) => !k.startsWith('_'));
const templates: Record<string, string> = {};

beforeAll(async () => {
  await buildFunctions();
  for (const name of names) {
    templates[name] = (
      await packageStack({ params: variants[name], prebuilt: true, prefix: 'kdr-variant-' })
    ).templatePath;
  }
  // Stage local: the lab's names, which the suite's recorded calls are evaluated against.
  templates.local = (
    await packageStack({ stage: 'local', prebuilt: true, prefix: 'kdr-local-' })
  ).templatePath;
}, 300_000);

describe.each(names)('variant %s', (name) => {
  it('gives Lambda everything it needs: zero findings', async () => {
    const findings = await checkLambdaRules(loadStack(templates[name]!));
    expect(findings.map((f) => f.message)).toEqual([]);
  });
});

// What loadStack resolves a template for by default.
const ACCOUNT = '000000000000';
const REGION = 'us-east-1';

/** A copy of a template with one action removed from one statement of one role's (or policy's) document. */
function without(template: string, holder: string, sid: string, action: string): Stack {
  const doc = JSON.parse(readFileSync(template, 'utf8'));
  const props = doc.Resources[holder].Properties;
  const statements = [
    ...(props.Policies ?? []).flatMap(
      (p: { PolicyDocument: { Statement: unknown[] } }) => p.PolicyDocument.Statement,
    ),
    ...(props.PolicyDocument?.Statement ?? []),
  ] as { Sid?: string; Action: string | string[] }[];
  const statement = statements.find((s) => s.Sid === sid);
  if (!statement) throw new Error(`no statement ${sid} in ${holder}`);
  const actions = [statement.Action].flat().filter((a) => a !== action);
  if (actions.length === [statement.Action].flat().length) throw new Error(`${sid} has no ${action}`);
  statement.Action = actions.length > 0 ? actions : ['sts:GetCallerIdentity'];
  return resolveStack(doc, ACCOUNT, REGION);
}

describe('the rules can fail: one permission removed from a copy is named', () => {
  it.each([
    [
      'default',
      'FailoverRole',
      'DeadLetters',
      'sqs:SendMessage',
      'deadLetterQueues',
      'FailoverLambdaFunction (role FailoverRole) is not allowed sqs:SendMessage',
    ],
    [
      'default',
      'FailbackRole',
      'Key',
      'kms:GenerateDataKey',
      'deadLetterQueues',
      'FailbackLambdaFunction (role FailbackRole) is not allowed kms:GenerateDataKey',
    ],
    [
      'default',
      'KdrKafkaSecretsPolicy',
      'KafkaCredentials',
      'secretsmanager:GetSecretValue',
      'eventSources',
      'is not allowed secretsmanager:GetSecretValue',
    ],
    [
      'vpc-two-topics',
      'MirrorEventSourcePolicy',
      'EventSourceNetwork',
      'ec2:DescribeVpcs',
      'eventSources',
      'is not allowed ec2:DescribeVpcs',
    ],
    [
      'vpc-two-topics',
      'KdrVpcAccessPolicy',
      'FunctionNetworkInterfaces',
      'ec2:CreateNetworkInterface',
      'functionBasics',
      'is not allowed ec2:CreateNetworkInterface',
    ],
    [
      'msk-iam',
      'MirrorEventSourcePolicy',
      'EventSourceIamGroups',
      'kafka-cluster:AlterGroup',
      'eventSources',
      'is not allowed kafka-cluster:AlterGroup',
    ],
    [
      'msk-iam',
      'MirrorEventSourcePolicy',
      'EventSourceBrokers',
      'kafka:GetBootstrapBrokers',
      'eventSources',
      'is not allowed kafka:GetBootstrapBrokers',
    ],
    [
      'default',
      'RestoreRole',
      'ContinueItself',
      'lambda:InvokeFunction',
      'selfInvocation',
      'RestoreLambdaFunction (role RestoreRole) is not allowed lambda:InvokeFunction',
    ],
    [
      'default',
      'StatusRole',
      'OwnLogs',
      'logs:PutLogEvents',
      'functionBasics',
      'StatusLambdaFunction (role StatusRole) is not allowed logs:PutLogEvents',
    ],
    [
      'cross-region',
      'SnapshotReplicationRole',
      'EncryptReplicas',
      'kms:Encrypt',
      'replication',
      'SnapshotReplicationRole is not allowed kms:Encrypt',
    ],
  ])('%s: %s without %s %s', async (variant, holder, sid, action, rule, message) => {
    const stack = without(templates[variant]!, holder, sid, action);
    const findings = await RULES[rule]!(stack);
    expect(findings.map((f) => f.message).join('\n')).toContain(message);
  });

  it('two event sources sharing a consumer group, a missing RecursiveLoop and async retries are named', async () => {
    const doc = JSON.parse(readFileSync(templates['vpc-two-topics']!, 'utf8'));
    const mappings = Object.values(doc.Resources).filter(
      (r) => (r as { Type: string }).Type === 'AWS::Lambda::EventSourceMapping',
    ) as { Properties: { SelfManagedKafkaEventSourceConfig: { ConsumerGroupId: string } } }[];
    expect(mappings.length).toBe(2);
    mappings[1]!.Properties.SelfManagedKafkaEventSourceConfig.ConsumerGroupId =
      mappings[0]!.Properties.SelfManagedKafkaEventSourceConfig.ConsumerGroupId;
    (mappings[0] as { Properties: Record<string, unknown> }).Properties.DestinationConfig = {
      OnFailure: { Destination: 'arn:aws:sqs:us-east-1:000000000000:somewhere' },
    };
    delete doc.Resources.FailoverLambdaFunction.Properties.RecursiveLoop;
    delete doc.Resources.FailbackLambdaEvConf.Properties.MaximumRetryAttempts;
    delete doc.Resources.OffsetTable.DeletionPolicy;
    const messages = (await checkLambdaRules(resolveStack(doc, ACCOUNT, REGION)))
      .map((f) => f.message)
      .join('\n');
    expect(messages).toContain('share consumer group kdr-mirror-primary-standby-dev-orders');
    expect(messages).toContain(
      'has an on-failure destination: Lambda would then retry a failing batch at most 10 times',
    );
    expect(messages).toContain('FailoverLambdaFunction invokes itself but RecursiveLoop is unset');
    expect(messages).toContain('FailbackLambdaFunction would be retried by Lambda');
    expect(messages).toContain('OffsetTable is not kept on stack deletion');
  });
});

describe('deployment settings in the packaged template', () => {
  it('each topic has its own event source group, distinct from the container mirror group', () => {
    const stack = loadStack(templates['vpc-two-topics']!);
    const groups = Object.values(stack.resources)
      .filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping')
      .map(
        (r) =>
          (r.Properties as { SelfManagedKafkaEventSourceConfig: { ConsumerGroupId: string } })
            .SelfManagedKafkaEventSourceConfig.ConsumerGroupId,
      )
      .sort();
    expect(groups).toEqual([
      'kdr-mirror-primary-standby-dev-orders',
      'kdr-mirror-primary-standby-dev-payments',
    ]);
    const env = (
      stack.resources.CheckpointLambdaFunction!.Properties as {
        Environment: { Variables: Record<string, string> };
      }
    ).Environment.Variables;
    expect(env.KDR_MIRROR_GROUP_ID).toBe('kdr-mirror-primary-standby-dev');
    // kdr's clients take the mechanism of the event source's authentication (primarySaslMechanism=auto).
    expect(env.KDR_PRIMARY_SASL_MECHANISM).toBe('scram-sha-512');
  });

  it('reserves no concurrency by default (a new account has none to spare); reserveConcurrency=true does', () => {
    const reserved = (name: string) =>
      Object.values(loadStack(templates[name]!).resources)
        .filter((r) => r.Type === 'AWS::Lambda::Function')
        .map((r) => (r.Properties as { ReservedConcurrentExecutions?: number }).ReservedConcurrentExecutions);
    expect(reserved('default').every((n) => n === undefined)).toBe(true);
    expect(reserved('vpc-two-topics').reduce((a, n) => (a ?? 0) + (n ?? 0), 0)).toBe(59);
  });

  it('no SASL at all: kdr clients get no secret and no mechanism, and no role reads a secret', () => {
    const stack = loadStack(templates.unauthenticated!);
    const env = (
      stack.resources.MirrorLambdaFunction!.Properties as {
        Environment: { Variables: Record<string, string> };
      }
    ).Environment.Variables;
    expect(env.KDR_PRIMARY_SASL_SECRET_ARN).toBe('');
    expect(env.KDR_PRIMARY_SASL_MECHANISM).toBe('');
    expect(stack.resources.KdrKafkaSecretsPolicy).toBeUndefined();
    expect(env.KDR_RESTORE_ALLOWED_BROKERS).toBe('dr-1.example.internal:9096');
  });
});

describe('a private CA and mTLS: kdr clients read the secrets the event source reads', () => {
  const variables = (stack: Stack, fn: string) =>
    (stack.resources[fn]!.Properties as { Environment: { Variables: Record<string, string> } }).Environment
      .Variables;
  const secret = (name: string) => `arn:aws:secretsmanager:us-east-1:000000000000:secret:kdr/${name}-AbCdEf`;

  it('hands every function the CA and client-certificate secrets, and every role may read them', () => {
    const stack = loadStack(templates['private-ca-mtls']!);
    for (const fn of ['MirrorLambdaFunction', 'FailoverLambdaFunction', 'RestoreLambdaFunction']) {
      expect(variables(stack, fn)).toMatchObject({
        KDR_PRIMARY_TLS_CA_SECRET_ARN: secret('primary-ca'),
        // With mTLS the event source's secret is a client certificate: kdr presents the same one...
        KDR_PRIMARY_TLS_CLIENT_SECRET_ARN: secret('primary-client'),
        // ...and reads no SASL credentials from it.
        KDR_PRIMARY_SASL_SECRET_ARN: '',
        KDR_PRIMARY_SASL_MECHANISM: '',
        KDR_STANDBY_TLS_CA_SECRET_ARN: secret('standby-ca'),
        KDR_STANDBY_TLS_CLIENT_SECRET_ARN: secret('standby-client'),
      });
    }
    const mapping = Object.values(stack.resources).find((r) => r.Type === 'AWS::Lambda::EventSourceMapping')!;
    expect(
      (mapping.Properties as { SourceAccessConfigurations: unknown[] }).SourceAccessConfigurations,
    ).toEqual(
      expect.arrayContaining([
        { Type: 'CLIENT_CERTIFICATE_TLS_AUTH', URI: secret('primary-client') },
        { Type: 'SERVER_ROOT_CA_CERTIFICATE', URI: secret('primary-ca') },
      ]),
    );
  });

  it("a role that cannot read the standby's CA secret is named", async () => {
    const doc = JSON.parse(readFileSync(templates['private-ca-mtls']!, 'utf8'));
    const statement = doc.Resources.KdrKafkaSecretsPolicy.Properties.PolicyDocument.Statement.find(
      (s: { Sid: string }) => s.Sid === 'KafkaCredentials',
    );
    statement.Resource = statement.Resource.filter((arn: string) => arn !== secret('standby-ca'));
    const findings = await checkLambdaRules(resolveStack(doc, ACCOUNT, REGION));
    expect(findings.map((f) => f.message).join('\n')).toContain('KDR_STANDBY_TLS_CA_SECRET_ARN names it');
    expect(findings.every((f) => f.message.includes(secret('standby-ca')))).toBe(true);
  });
});

describe("the suite's recorded calls are evaluated against the roles (test/helpers/globalSetup.ts)", () => {
  const calls = [
    {
      function: 'failover',
      client: 'DynamoDBClient',
      command: 'TransactWriteItemsCommand',
      input: { TransactItems: [{ Put: 'kdr-local-state' }, { ConditionCheck: 'kdr-local-state' }] },
    },
    {
      function: 'snapshot',
      client: 'S3Client',
      command: 'PutObjectCommand',
      input: { Bucket: 'kdr-local', Key: 'snapshots/x' },
    },
    {
      function: 'failback',
      client: 'S3Client',
      command: 'PutObjectCommand',
      input: { Bucket: 'kdr-local', Key: 'snapshots/x' },
    },
    {
      function: null,
      client: 'S3Client',
      command: 'DeleteObjectsCommand',
      input: { Bucket: 'kdr-local', DeleteKeys: ['a'] },
    },
  ];
  const roleOf = (stack: Stack) => (fn: string) => roleOfFunction(stack, fn);

  it('allows what the roles grant, denies what they do not, and skips calls made outside a function', async () => {
    const stack = loadStack(templates.local!, '123456789012');
    const { denied, evaluated } = await deniedCalls(calls, stack, roleOf(stack));
    // failover: PutItem + ConditionCheckItem; snapshot: PutObject + GenerateDataKey; failback: the same two.
    expect(evaluated).toBe(6);
    // Failback may write only under failback/: a snapshot key is refused.
    expect(denied.map((d) => `${d.function} ${d.action} ${d.resource}`)).toEqual([
      'failback s3:PutObject arn:aws:s3:::kdr-local/snapshots/x',
    ]);
  });

  it('names the function, action and resource once a permission is removed from a copy', async () => {
    const stack = without(
      templates.local!,
      'FailoverRole',
      'ControlStateAndCheckpoints',
      'dynamodb:ConditionCheckItem',
    );
    const { denied } = await deniedCalls(calls.slice(0, 1), stack, roleOf(stack));
    expect(denied.map((d) => `${d.function} (role ${d.role}) ${d.action} ${d.resource}`)).toEqual([
      'failover (role FailoverRole) dynamodb:ConditionCheckItem arn:aws:dynamodb:us-east-1:000000000000:table/kdr-local-state',
    ]);
  });
});

describe('deployment settings refused at package time', () => {
  const refusals: [string[], string][] = [
    [
      ['sourceType=msk', 'mskAuthType=saslScram512'],
      'param mskAuthType=saslScram512 needs secretsKmsKeyArns',
    ],
    [['mirrorConsumerGroupId=dr/esm'], 'expected at most 200 characters of letters, digits'],
    [['replicaBucketArn=arn:aws:s3:::replica'], 'param replicaBucketArn needs replicaKmsKeyArn'],
    // A CA or a client certificate with TLS off would fail every invocation at its first connection.
    [
      [
        'primaryTls=false',
        'primaryRootCaSecretArn=arn:aws:secretsmanager:us-east-1:000000000000:secret:ca-AbCdEf',
      ],
      'param primaryTls must be true with primaryRootCaSecretArn',
    ],
    [
      ['primaryTls=false', 'primaryAuthType=clientCertificateTlsAuth'],
      'param primaryTls must be true with primaryAuthType=clientCertificateTlsAuth',
    ],
    [
      [
        'standbyTls=false',
        'standbyClientCertSecretArn=arn:aws:secretsmanager:us-east-1:000000000000:secret:c-AbCdEf',
      ],
      'param standbyTls must be true with standbyClientCertSecretArn',
    ],
    // No authentication and no VPC, even with a private CA: the event source would reach open brokers.
    [
      [
        'primaryAuthType=none',
        'primarySaslSecretArn=none',
        'primaryRootCaSecretArn=arn:aws:secretsmanager:us-east-1:000000000000:secret:ca-AbCdEf',
      ],
      'param primaryAuthType=none needs vpcSubnets and vpcSecurityGroups',
    ],
  ];
  it.each(refusals)('%j', async (params, message) => {
    const result = await tryPackageStack({ params, prebuilt: true, prefix: 'kdr-refused-' });
    expect(result.exitCode).not.toBe(0);
    expect(result.output).toContain(message);
  });

  it('"none" for a CA secret means none: no env value, no event source CA', async () => {
    const { templatePath } = await packageStack({
      params: ['primaryRootCaSecretArn=none', 'standbyRootCaSecretArn=none'],
      prebuilt: true,
      prefix: 'kdr-ca-none-',
    });
    const stack = loadStack(templatePath);
    const vars = (
      stack.resources.MirrorLambdaFunction!.Properties as {
        Environment: { Variables: Record<string, string> };
      }
    ).Environment.Variables;
    expect(vars.KDR_PRIMARY_TLS_CA_SECRET_ARN).toBe('');
    expect(vars.KDR_STANDBY_TLS_CA_SECRET_ARN).toBe('');
    const mapping = Object.values(stack.resources).find((r) => r.Type === 'AWS::Lambda::EventSourceMapping')!;
    expect(JSON.stringify(mapping.Properties)).not.toContain('SERVER_ROOT_CA_CERTIFICATE');
  });

  it('primaryAuthType saslScram256Auth gives kdr clients scram-sha-256', async () => {
    const { templatePath } = await packageStack({
      params: ['primaryAuthType=saslScram256Auth'],
      prebuilt: true,
      prefix: 'kdr-scram256-',
    });
    const stack = loadStack(templatePath);
    const vars = (
      stack.resources.FailoverLambdaFunction!.Properties as {
        Environment: { Variables: Record<string, string> };
      }
    ).Environment.Variables;
    expect(vars.KDR_PRIMARY_SASL_MECHANISM).toBe('scram-sha-256');
  });
});
