// The mirror function's event sources, one per topic (a Lambda Kafka event source mapping reads one
// topic). Built from stage params so that the topic list and the source kind (self-managed Kafka or MSK)
// are deployment settings: `sls deploy --param="topics=orders,payments" --param="sourceType=msk" ...`.
'use strict';

module.exports = async ({ resolveVariable }) => {
  const param = async (name) => resolveVariable(`param:${name}`);
  const topics = String(await param('topics'))
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const sourceType = await param('sourceType');
  const common = {
    batchSize: Number(await param('mirrorBatchSize')),
    maximumBatchingWindow: Number(await param('mirrorBatchWindowSeconds')),
    startingPosition: await param('mirrorStartingPosition'),
    consumerGroupId: await param('mirrorConsumerGroupId'),
  };
  if (sourceType === 'msk') {
    const arn = await param('mskClusterArn');
    return topics.map((topic) => ({ msk: { arn, topic, ...common } }));
  }
  if (sourceType !== 'kafka')
    throw new Error(`param sourceType must be kafka or msk, got ${JSON.stringify(sourceType)}`);
  const bootstrapServers = String(await param('primaryBootstrap')).split(',');
  const authType = await param('primaryAuthType');
  const accessConfigurations = { [authType]: [await param('primarySecretArn')] };
  const subnets = String(await param('vpcSubnets'))
    .split(',')
    .filter(Boolean);
  const securityGroups = String(await param('vpcSecurityGroups'))
    .split(',')
    .filter(Boolean);
  if (subnets.length > 0) accessConfigurations.vpcSubnet = subnets;
  if (securityGroups.length > 0) accessConfigurations.vpcSecurityGroup = securityGroups;
  return topics.map((topic) => ({ kafka: { accessConfigurations, bootstrapServers, topic, ...common } }));
};
