// Deployment choices made from stage params at package time (`sls package --param=...`), so that the
// template holds only what applies: no always-true CloudFormation conditions, no empty ARNs.
'use strict';

const param = (resolveVariable, name) => resolveVariable(`param:${name}`).then((v) => String(v ?? '').trim());
const list = (value) =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

module.exports = {
  /** provider.vpc: the functions run in the brokers' VPC when subnets are given. */
  vpc: async ({ resolveVariable }) => {
    const subnetIds = list(await param(resolveVariable, 'vpcSubnets'));
    const securityGroupIds = list(await param(resolveVariable, 'vpcSecurityGroups'));
    // Empty lists: no VPC (what CloudFormation takes to mean "not in a VPC").
    if (subnetIds.length === 0) return { subnetIds: [], securityGroupIds: [] };
    if (securityGroupIds.length === 0) throw new Error('param vpcSubnets needs vpcSecurityGroups too');
    return { subnetIds, securityGroupIds };
  },
  /** Managed policies of the mirror's role: VPC network interfaces, and MSK when the source is MSK. */
  mirrorManagedPolicies: async ({ resolveVariable }) => {
    const arns = [];
    if (list(await param(resolveVariable, 'vpcSubnets')).length > 0)
      arns.push('arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole');
    if ((await param(resolveVariable, 'sourceType')) === 'msk')
      arns.push('arn:aws:iam::aws:policy/service-role/AWSLambdaMSKExecutionRole');
    return arns;
  },
  /** Managed policies of the other roles: VPC network interfaces only. */
  managedPolicies: async ({ resolveVariable }) =>
    list(await param(resolveVariable, 'vpcSubnets')).length > 0
      ? ['arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole']
      : [],
  /** The Secrets Manager secrets holding kdr's SASL credentials (and the event source's). */
  kafkaSecrets: async ({ resolveVariable }) => {
    const arns = [
      await param(resolveVariable, 'primarySecretArn'),
      await param(resolveVariable, 'standbySecretArn'),
    ];
    return [...new Set(arns.filter(Boolean))];
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
            // Objects are re-encrypted in the destination region with S3's managed key there.
            EncryptionConfiguration: { ReplicaKmsKeyID: 'alias/aws/s3' },
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
              ],
            },
          },
        ],
      },
    };
  }
  return doc;
};
