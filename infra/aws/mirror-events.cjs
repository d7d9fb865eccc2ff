// The mirror function's event sources, one per topic (a Lambda Kafka event source mapping reads one
// topic). Built from stage params so that the topic list and the source kind (self-managed Kafka or MSK)
// are deployment settings: `sls deploy --param="topics=orders,payments" --param="sourceType=msk" ...`.
'use strict';

// Self-managed Kafka authentication of the event source (osls accessConfigurations keys), or none.
const KAFKA_AUTH = [
  'saslScram512Auth',
  'saslScram256Auth',
  'saslPlainAuth',
  'clientCertificateTlsAuth',
  'none',
];
const MSK_AUTH = ['saslScram512', 'iam', 'none'];

/**
 * Each mapping's consumer group: AWS requires it unique among all Kafka event sources, and it cannot
 * change after creation (https://docs.aws.amazon.com/lambda/latest/dg/kafka-consumer-group-id.html).
 * It must differ from the container mirror's group (kdr-mirror-<pair>), or the two would split the
 * partitions between them.
 */
function consumerGroupIdOf(prefix, topic) {
  const id = `${prefix}-${topic}`;
  // Letters, digits, . _ -: what AWS allows for the group id and what kdr's KDR_MIRROR_GROUP_ID takes.
  if (id.length > 200 || !/^[A-Za-z0-9._-]+$/.test(prefix) || !/^[A-Za-z0-9._-]+$/.test(id))
    throw new Error(
      `param mirrorConsumerGroupId gives the consumer group id ${JSON.stringify(id)} for topic ${topic}: expected at most 200 characters of letters, digits, '.', '_', '-'`,
    );
  return id;
}

function oneOf(name, value, allowed) {
  if (!allowed.includes(value))
    throw new Error(`param ${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value;
}

module.exports = async ({ resolveVariable }) => {
  const param = async (name) => String((await resolveVariable(`param:${name}`)) ?? '').trim();
  const topics = (await param('topics'))
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (topics.length === 0) throw new Error('param topics is empty: name at least one topic to mirror');
  const sourceType = await param('sourceType');
  const groupPrefix = await param('mirrorConsumerGroupId');
  const batchSize = Number(await param('mirrorBatchSize'));
  const maximumBatchingWindow = Number(await param('mirrorBatchWindowSeconds'));
  const startingPosition = await param('mirrorStartingPosition');
  // The on-failure destination (the dead-letter queue) is set by infra/aws/kdr-plugin.cjs: osls takes
  // only a literal ARN for Kafka and none for MSK.
  const shared = (topic) => ({
    topic,
    batchSize,
    maximumBatchingWindow,
    startingPosition,
    consumerGroupId: consumerGroupIdOf(groupPrefix, topic),
  });
  if (sourceType === 'msk') {
    const arn = await param('mskClusterArn');
    const auth = oneOf('mskAuthType', await param('mskAuthType'), MSK_AUTH);
    // IAM access control needs no secret: the execution role's kafka-cluster:* grants (params.cjs).
    const scram = auth === 'saslScram512' ? { saslScram512: await param('primarySecretArn') } : {};
    return topics.map((topic) => ({ msk: { arn, ...shared(topic), ...scram } }));
  }
  oneOf('sourceType', sourceType, ['kafka', 'msk']);
  const bootstrapServers = (await param('primaryBootstrap')).split(',');
  const authType = oneOf('primaryAuthType', await param('primaryAuthType'), KAFKA_AUTH);
  const accessConfigurations = {};
  if (authType !== 'none') accessConfigurations[authType] = [await param('primarySecretArn')];
  // A private CA: a Secrets Manager secret {"certificate": "<PEM>"} that the event source trusts.
  const rootCa = await param('primaryRootCaSecretArn');
  if (rootCa && rootCa !== 'none') accessConfigurations.serverRootCaCertificate = [rootCa];
  const subnets = (await param('vpcSubnets')).split(',').filter(Boolean);
  const securityGroups = (await param('vpcSecurityGroups')).split(',').filter(Boolean);
  if (subnets.length > 0) accessConfigurations.vpcSubnet = subnets;
  if (securityGroups.length > 0) accessConfigurations.vpcSecurityGroup = securityGroups;
  if (authType === 'none' && subnets.length === 0)
    throw new Error(
      'param primaryAuthType=none needs vpcSubnets and vpcSecurityGroups: an event source without authentication reaches the brokers only through their VPC',
    );
  return topics.map((topic) => ({
    kafka: {
      accessConfigurations,
      bootstrapServers,
      ...shared(topic),
    },
  }));
};
