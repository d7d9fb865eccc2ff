// Deployment choices made from stage params at package time (`sls package --param=...`), so that the
// template holds only what applies: no always-true CloudFormation conditions, no empty ARNs.
'use strict';

const param = (resolveVariable, name) => resolveVariable(`param:${name}`).then((v) => String(v ?? '').trim());
const list = (value) =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

// Lambda's own needs, each from its AWS documentation page:
// - functions in a VPC: https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-permissions
// - a self-managed Kafka event source in a VPC: https://docs.aws.amazon.com/lambda/latest/dg/with-kafka-permissions.html
// - an MSK event source (cluster, VPC, IAM access control): https://docs.aws.amazon.com/lambda/latest/dg/with-msk-permissions.html
// - secrets encrypted with a customer managed key: https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
const VPC_FUNCTION_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
];
const VPC_EVENT_SOURCE_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeVpcs',
  'ec2:DeleteNetworkInterface',
  'ec2:DescribeSubnets',
  'ec2:DescribeSecurityGroups',
];
const NETWORK_INTERFACES_SKIP = {
  id: 'CKV_AWS_111',
  comment:
    'Lambda creates and deletes the network interfaces of the brokers VPC itself; EC2 names no interface before it exists, so AWS documents Resource "*" for these actions',
};

/** The Secrets Manager secrets kdr's functions read (and the event source's). */
async function kafkaSecretArns(get) {
  // The event source's secret where it authenticates with one, its private CA, and the secrets kdr's own
  // clients read (KDR_*_SASL_SECRET_ARN): an overridden primarySaslSecretArn must be readable too.
  const msk = (await get('sourceType')) === 'msk';
  const eventSourceUsesSecret = msk
    ? (await get('mskAuthType')) === 'saslScram512'
    : (await get('primaryAuthType')) !== 'none';
  const arns = [
    eventSourceUsesSecret ? await get('primarySecretArn') : '',
    await get('primaryRootCaSecretArn'),
    await get('primarySaslSecretArn'),
    await get('standbySecretArn'),
    await get('standbyRootCaSecretArn'),
    await get('standbyClientCertSecretArn'),
  ];
  return [...new Set(arns.filter((arn) => arn && arn !== NONE))];
}

async function deploymentPolicyDocuments(resolveVariable) {
  const get = (name) => param(resolveVariable, name);
  const inVpc = list(await get('vpcSubnets')).length > 0;
  const msk = (await get('sourceType')) === 'msk';
  const documents = {};
  if (inVpc) {
    documents.KdrVpcAccessPolicy = {
      description: 'kdr functions run in the brokers VPC: their network interfaces',
      statements: [
        { Sid: 'FunctionNetworkInterfaces', Effect: 'Allow', Action: VPC_FUNCTION_ACTIONS, Resource: '*' },
      ],
      checkovSkips: [NETWORK_INTERFACES_SKIP],
    };
  }
  const eventSource = [];
  if (inVpc || msk)
    eventSource.push({
      Sid: 'EventSourceNetwork',
      Effect: 'Allow',
      Action: VPC_EVENT_SOURCE_ACTIONS,
      Resource: '*',
    });
  if (msk) {
    const cluster = await get('mskClusterArn');
    eventSource.push(
      { Sid: 'EventSourceCluster', Effect: 'Allow', Action: ['kafka:DescribeClusterV2'], Resource: cluster },
      // GetBootstrapBrokers has no resource-level permissions.
      { Sid: 'EventSourceBrokers', Effect: 'Allow', Action: ['kafka:GetBootstrapBrokers'], Resource: '*' },
    );
    if ((await get('mskAuthType')) === 'iam') {
      const under = (kind, name) => `${cluster.replace(':cluster/', `:${kind}/`)}/${name}`;
      const topics = list(await get('topics'));
      const groupPrefix = await get('mirrorConsumerGroupId');
      eventSource.push(
        {
          Sid: 'EventSourceIamConnect',
          Effect: 'Allow',
          Action: ['kafka-cluster:Connect', 'kafka-cluster:DescribeClusterDynamicConfiguration'],
          Resource: cluster,
        },
        {
          Sid: 'EventSourceIamTopics',
          Effect: 'Allow',
          Action: ['kafka-cluster:DescribeTopic', 'kafka-cluster:ReadData'],
          Resource: topics.map((t) => under('topic', t)),
        },
        {
          Sid: 'EventSourceIamGroups',
          Effect: 'Allow',
          Action: ['kafka-cluster:DescribeGroup', 'kafka-cluster:AlterGroup'],
          Resource: topics.map((t) => under('group', `${groupPrefix}-${t}`)),
        },
      );
    }
  }
  if (eventSource.length > 0) {
    documents.MirrorEventSourcePolicy = {
      description: 'The mirror function Kafka event source: network interfaces in the VPC, the MSK cluster',
      statements: eventSource,
      checkovSkips: [NETWORK_INTERFACES_SKIP],
    };
  }
  const secrets = await kafkaSecretArns(get);
  const secretKeys = list(await get('secretsKmsKeyArns'));
  if (msk && (await get('mskAuthType')) === 'saslScram512' && secretKeys.length === 0)
    throw new Error(
      'param mskAuthType=saslScram512 needs secretsKmsKeyArns: MSK takes SCRAM secrets only under a customer managed KMS key, which the roles must be allowed to decrypt with',
    );
  if (secrets.length > 0) {
    documents.KdrKafkaSecretsPolicy = {
      description:
        'Reads the Kafka credentials (and CA) secrets, decrypting them with their own key if given',
      statements: [
        {
          Sid: 'KafkaCredentials',
          Effect: 'Allow',
          Action: ['secretsmanager:GetSecretValue'],
          Resource: secrets,
        },
        // MSK SASL/SCRAM requires a secret under a customer managed key.
        ...(secretKeys.length > 0
          ? [
              {
                Sid: 'SecretKeys',
                Effect: 'Allow',
                Action: ['kms:Decrypt'],
                Resource: secretKeys,
                Condition: {
                  StringEquals: {
                    // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub
                    'kms:ViaService': { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' },
                  },
                },
              },
            ]
          : []),
      ],
      checkovSkips: [],
    };
  }
  return documents;
}

// A param that cannot be given empty on the command line (`--param=x=` is refused) says "none".
const NONE = 'none';
/** A param's value, '' where it says "none". */
const paramOrNone = async (resolveVariable, name) => {
  const value = await param(resolveVariable, name);
  return value === NONE ? '' : value;
};

module.exports = {
  /**
   * The secrets kdr's own clients read, '' for none: SASL (KDR_*_SASL_SECRET_ARN) and, with mTLS, the
   * event source's client certificate (KDR_PRIMARY_TLS_CLIENT_SECRET_ARN).
   */
  clientSecrets: async ({ resolveVariable }) => {
    const arn = (name) => paramOrNone(resolveVariable, name);
    const primary = await arn('primarySaslSecretArn');
    const standby = await arn('standbySecretArn');
    const msk = (await param(resolveVariable, 'sourceType')) === 'msk';
    const authType = await param(resolveVariable, msk ? 'mskAuthType' : 'primaryAuthType');
    // With mTLS the event source's secret is a client certificate, which kdr's clients present too
    // (clientTls): they use SASL only if given a secret of their own.
    const mtls = !msk && authType === 'clientCertificateTlsAuth';
    const primarySasl = mtls && primary === (await param(resolveVariable, 'primarySecretArn')) ? '' : primary;
    const derived = {
      saslScram512Auth: 'scram-sha-512',
      saslScram256Auth: 'scram-sha-256',
      saslPlainAuth: 'plain',
      saslScram512: 'scram-sha-512',
    };
    const primaryMechanism = async () => {
      const given = await arn('primarySaslMechanism');
      if (given !== 'auto') return given;
      const mechanism = derived[authType];
      if (!mechanism)
        throw new Error(
          `param primarySaslMechanism=auto cannot follow ${msk ? 'mskAuthType' : 'primaryAuthType'}=${authType}: set it (scram-sha-512, scram-sha-256 or plain)`,
        );
      return mechanism;
    };
    // No secret, no mechanism: kdr refuses a SASL mechanism without credentials.
    return {
      primary: primarySasl,
      standby,
      primaryMechanism: primarySasl ? await primaryMechanism() : '',
      standbyMechanism: standby ? await arn('standbySaslMechanism') : '',
    };
  },
  /**
   * The TLS secrets kdr's clients read (KDR_*_TLS_CA_SECRET_ARN, KDR_*_TLS_CLIENT_SECRET_ARN), '' for
   * none: the event source's own CA and, with mTLS, its client certificate, and the standby's. A CA or a
   * certificate with TLS turned off would fail every invocation, so packaging refuses it.
   */
  clientTls: async ({ resolveVariable }) => {
    const arn = (name) => paramOrNone(resolveVariable, name);
    const msk = (await param(resolveVariable, 'sourceType')) === 'msk';
    const mtls = !msk && (await param(resolveVariable, 'primaryAuthType')) === 'clientCertificateTlsAuth';
    const tls = {
      primaryCa: await arn('primaryRootCaSecretArn'),
      primaryClientCertificate: mtls ? await arn('primarySecretArn') : '',
      standbyCa: await arn('standbyRootCaSecretArn'),
      standbyClientCertificate: await arn('standbyClientCertSecretArn'),
    };
    for (const cluster of ['primary', 'standby']) {
      const given = [
        tls[`${cluster}Ca`] ? `${cluster}RootCaSecretArn` : '',
        tls[`${cluster}ClientCertificate`]
          ? cluster === 'primary'
            ? 'primaryAuthType=clientCertificateTlsAuth'
            : 'standbyClientCertSecretArn'
          : '',
      ].filter(Boolean);
      if (given.length > 0 && (await param(resolveVariable, `${cluster}Tls`)) !== 'true')
        throw new Error(
          `param ${cluster}Tls must be true with ${given.join(' and ')}: a CA or a client certificate is used only over TLS`,
        );
    }
    return tls;
  },
  /** provider.vpc: the functions run in the brokers' VPC when subnets are given. */
  vpc: async ({ resolveVariable }) => {
    const subnetIds = list(await param(resolveVariable, 'vpcSubnets'));
    const securityGroupIds = list(await param(resolveVariable, 'vpcSecurityGroups'));
    // Empty lists: no VPC (what CloudFormation takes to mean "not in a VPC").
    if (subnetIds.length === 0) return { subnetIds: [], securityGroupIds: [] };
    if (securityGroupIds.length === 0) throw new Error('param vpcSubnets needs vpcSecurityGroups too');
    return { subnetIds, securityGroupIds };
  },
  /** Managed policies of the mirror's role: its functions' VPC access, its event source's, secret keys. */
  mirrorManagedPolicies: async ({ resolveVariable }) =>
    Object.keys(await deploymentPolicyDocuments(resolveVariable)).map((id) => ({ Ref: id })),
  /** Managed policies of the other roles: VPC network interfaces and secret keys only. */
  managedPolicies: async ({ resolveVariable }) =>
    Object.keys(await deploymentPolicyDocuments(resolveVariable))
      .filter((id) => id !== 'MirrorEventSourcePolicy')
      .map((id) => ({ Ref: id })),
  /** The customer-managed policies that apply to this deployment (VPC, MSK, secret keys), as resources. */
  deploymentPolicies: async ({ resolveVariable }) => {
    const documents = await deploymentPolicyDocuments(resolveVariable);
    const Resources = {};
    for (const [id, { description, statements, checkovSkips }] of Object.entries(documents)) {
      Resources[id] = {
        Type: 'AWS::IAM::ManagedPolicy',
        Properties: {
          Description: description,
          PolicyDocument: { Version: '2012-10-17', Statement: statements },
        },
        ...(checkovSkips.length > 0 ? { Metadata: { checkov: { skip: checkovSkips } } } : {}),
      };
    }
    return { Resources };
  },
  /**
   * Reserved concurrency per function, or none at all with reserveConcurrency=false: an account whose
   * concurrency quota is still the new-account 10 cannot reserve any (Lambda keeps 10 unreserved).
   */
  reservedConcurrency: async ({ resolveVariable }) => {
    const reserve = await param(resolveVariable, 'reserveConcurrency');
    if (reserve !== 'true' && reserve !== 'false')
      throw new Error(`param reserveConcurrency must be true or false, got ${JSON.stringify(reserve)}`);
    const mirror = Number(await param(resolveVariable, 'mirrorReservedConcurrency'));
    if (!Number.isInteger(mirror) || mirror < 1)
      throw new Error(`param mirrorReservedConcurrency must be a positive integer, got ${mirror}`);
    // Checkpoint, snapshot and restore: one at a time. Failover, failback, status: two (a continuation
    // and an abort or status call; the operation's lease serialises the runs).
    const counts = { mirror, checkpoint: 1, snapshot: 1, restore: 1, failover: 2, failback: 2, status: 2 };
    const none = { Ref: 'AWS::NoValue' };
    return Object.fromEntries(Object.entries(counts).map(([fn, n]) => [fn, reserve === 'true' ? n : none]));
  },
  /** An e-mail subscription to the alarm topic, when an address is given. */
  alarmEmail: async ({ resolveVariable }) => {
    const email = await param(resolveVariable, 'alarmEmail');
    if (!email) return {};
    return {
      Resources: {
        AlarmEmailSubscription: {
          Type: 'AWS::SNS::Subscription',
          Properties: { TopicArn: { Ref: 'AlarmTopic' }, Protocol: 'email', Endpoint: email },
        },
      },
    };
  },
};

const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');

// CloudFormation's short tags as the JSON forms a template takes.
const cfnTags = [
  { tag: '!Ref', resolve: (v) => ({ Ref: v }) },
  { tag: '!Sub', resolve: (v) => ({ 'Fn::Sub': v }) },
  { tag: '!GetAtt', resolve: (v) => ({ 'Fn::GetAtt': String(v).split('.') }) },
];

/**
 * kdr's durable state (infra/aws/state.yml, which the lab provisions too), with the cross-region options:
 *   replicaRegions=eu-central-1[,...]  the two tables become DynamoDB global tables with replicas there;
 *   replicaBucketArn=arn:aws:s3:::...   the snapshot bucket replicates to that (versioned) bucket.
 */
module.exports.state = async ({ resolveVariable }) => {
  const doc = YAML.parse(fs.readFileSync(path.join(__dirname, 'state.yml'), 'utf8'), { customTags: cfnTags });
  const replicas = list(await param(resolveVariable, 'replicaRegions'));
  const replicaBucketArn = await param(resolveVariable, 'replicaBucketArn');
  const resources = doc.Resources;
  if (replicas.length > 0) {
    for (const id of ['OffsetTable', 'StateTable']) {
      const p = resources[id].Properties;
      const replica = (region, own) => ({
        Region: region,
        PointInTimeRecoverySpecification: p.PointInTimeRecoverySpecification,
        DeletionProtectionEnabled: p.DeletionProtectionEnabled,
        // The stack's key lives in its own region; replicas elsewhere use DynamoDB's AWS managed key.
        SSESpecification: { KMSMasterKeyId: own ? p.SSESpecification.KMSMasterKeyId : 'alias/aws/dynamodb' },
      });
      resources[id] = {
        Type: 'AWS::DynamoDB::GlobalTable',
        DeletionPolicy: resources[id].DeletionPolicy,
        UpdateReplacePolicy: resources[id].UpdateReplacePolicy,
        Properties: {
          TableName: p.TableName,
          BillingMode: p.BillingMode,
          AttributeDefinitions: p.AttributeDefinitions,
          KeySchema: p.KeySchema,
          ...(p.GlobalSecondaryIndexes ? { GlobalSecondaryIndexes: p.GlobalSecondaryIndexes } : {}),
          StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
          SSESpecification: { SSEEnabled: true, SSEType: 'KMS' },
          Replicas: [replica({ Ref: 'AWS::Region' }, true), ...replicas.map((r) => replica(r, false))],
        },
      };
    }
  }
  if (replicaBucketArn) {
    // S3 re-encrypts each replica with a customer managed key of the destination region, named by its
    // ARN; the replication role encrypts with it (https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html).
    const replicaKmsKeyArn = await param(resolveVariable, 'replicaKmsKeyArn');
    if (!/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[0-9a-f-]+$/.test(replicaKmsKeyArn))
      throw new Error(
        `param replicaBucketArn needs replicaKmsKeyArn, the ARN of a KMS key in the replica bucket's region (arn:aws:kms:<region>:<account>:key/<id>), got ${JSON.stringify(replicaKmsKeyArn)}`,
      );
    // The role names the bucket by its name, not Fn::GetAtt: the bucket already refers to the role.
    const name = await resolveVariable('self:custom.names.bucket');
    const arn = (suffix) =>
      typeof name === 'string'
        ? `arn:aws:s3:::${name}${suffix}`
        : { 'Fn::Sub': `arn:\${AWS::Partition}:s3:::${name['Fn::Sub']}${suffix}` };
    resources.SnapshotBucket.Properties.ReplicationConfiguration = {
      Role: { 'Fn::GetAtt': ['SnapshotReplicationRole', 'Arn'] },
      Rules: [
        {
          Id: 'replicate-everything',
          Status: 'Enabled',
          Priority: 1,
          Filter: { Prefix: '' },
          DeleteMarkerReplication: { Status: 'Enabled' },
          SourceSelectionCriteria: { SseKmsEncryptedObjects: { Status: 'Enabled' } },
          Destination: {
            Bucket: replicaBucketArn,
            EncryptionConfiguration: { ReplicaKmsKeyID: replicaKmsKeyArn },
          },
        },
      ],
    };
    resources.SnapshotReplicationRole = {
      Type: 'AWS::IAM::Role',
      Properties: {
        AssumeRolePolicyDocument: {
          Version: '2012-10-17',
          Statement: [
            { Effect: 'Allow', Principal: { Service: 's3.amazonaws.com' }, Action: 'sts:AssumeRole' },
          ],
        },
        Policies: [
          {
            PolicyName: 'replicate-snapshots',
            PolicyDocument: {
              Version: '2012-10-17',
              Statement: [
                {
                  Sid: 'ReadSource',
                  Effect: 'Allow',
                  Action: ['s3:GetReplicationConfiguration', 's3:ListBucket'],
                  Resource: arn(''),
                },
                {
                  Sid: 'ReadSourceObjects',
                  Effect: 'Allow',
                  Action: [
                    's3:GetObjectVersionForReplication',
                    's3:GetObjectVersionAcl',
                    's3:GetObjectVersionTagging',
                  ],
                  Resource: arn('/*'),
                },
                {
                  Sid: 'WriteReplicas',
                  Effect: 'Allow',
                  Action: ['s3:ReplicateObject', 's3:ReplicateDelete', 's3:ReplicateTags'],
                  Resource: `${replicaBucketArn}/*`,
                },
                {
                  Sid: 'DecryptSource',
                  Effect: 'Allow',
                  Action: ['kms:Decrypt'],
                  Resource: { 'Fn::GetAtt': ['KdrKey', 'Arn'] },
                },
                {
                  Sid: 'EncryptReplicas',
                  Effect: 'Allow',
                  Action: ['kms:Encrypt'],
                  Resource: replicaKmsKeyArn,
                },
              ],
            },
          },
        ],
      },
    };
  }
  return doc;
};
