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
