import { SQSClient } from '@aws-sdk/client-sqs';
import { createKafka } from '../../src/adapters/kafka/client.ts';
import { loadConfig } from '../../src/config.ts';
import { packageStack } from '../aws/packageStack.ts';
import { loadStack } from '../aws/stackIam.ts';
import { LAB_LAMBDA_PARAMS, LambdaLab, labLambdaEnvironment, sqsDeadLetters } from './lambdaLab.ts';
import { ensureLambdaRuntime, LAMBDA_CONTAINER_MARK } from './lambdaRuntime.ts';
import { labPaths } from './paths.ts';

/**
 * The process `kdr lab up --lambda` starts (detached, its pid in the lab state): packages the stack for
 * the lab, runs it (LambdaLab) with the Lambda API on KDR_LAB_LAMBDA_PORT, and stops it all on SIGTERM.
 * Extra package params come as a JSON list in KDR_LAB_LAMBDA_PARAMS.
 */

const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);
const config = loadConfig();
const port = Number(process.env.KDR_LAB_LAMBDA_PORT);
const params = JSON.parse(process.env.KDR_LAB_LAMBDA_PARAMS ?? '[]') as string[];

const runtime = await ensureLambdaRuntime(labPaths().cache, log);
log(`packaging the stack for the lab: ${[...LAB_LAMBDA_PARAMS, ...params].join(' ')}`);
const { dir, templatePath } = await packageStack({
  stage: 'local',
  prefix: 'kdr-lab-lambda-',
  params: [...LAB_LAMBDA_PARAMS, ...params],
});
const lab = await LambdaLab.start({
  stack: loadStack(templatePath, '000000000000', config.aws.region),
  packagedDir: dir,
  primary: createKafka(config.primary, 'kdr-lab-event-source'),
  primaryBrokers: config.primary.brokers,
  runtime,
  logDir: labPaths().logs,
  region: config.aws.region,
  // The mark `kdr lab stop-lambda` finds the containers by, should this process be killed first.
  environment: labLambdaEnvironment(config, { [LAMBDA_CONTAINER_MARK]: labPaths().root }),
  eventSource: { log },
  port,
  deadLetters: sqsDeadLetters(
    new SQSClient({
      region: config.aws.region,
      ...(config.aws.endpoint ? { endpoint: config.aws.endpoint } : {}),
      ...(config.aws.credentials ? { credentials: config.aws.credentials } : {}),
    }),
  ),
});
log(
  `Lambda API on ${lab.api.url}; functions ${lab.api
    .functions()
    .map((f) => f.functionName)
    .join(', ')}`,
);
for (const s of lab.eventSources)
  log(`event source ${s.state.UUID}: ${s.definition.topic} -> ${s.definition.functionArn}`);
for (const s of lab.schedules) log(`schedule ${s.logicalId}: ${s.expression} -> ${s.targetArn}`);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping the event sources and containers`);
    void lab.close().finally(() => process.exit(0));
  });
