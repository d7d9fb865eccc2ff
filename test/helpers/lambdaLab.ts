import { InvokeCommand, LambdaClient, ListEventSourceMappingsCommand } from '@aws-sdk/client-lambda';
import { packageStack } from '../../infra/aws/packageStack.ts';
import { loadStack } from '../../infra/aws/stackIam.ts';
import type { EventSourceOptions } from '../../infra/local/kafkaEventSource.ts';
import { LambdaLab } from '../../infra/local/lambdaLab.ts';
import { ensureLambdaRuntime, type FunctionSpec } from '../../infra/local/lambdaRuntime.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { config, kafkaFor } from './lab.ts';

/**
 * What a packaged function's container gets besides the template's environment, as Lambda gives it:
 * its role's credentials and region; and the lab's endpoints (the template's own under the default
 * ports, shifted under KDR_LAB_PORT_OFFSET).
 */
export function lambdaEnvironment(environment: Record<string, string> = {}): Record<string, string> {
  return {
    KDR_PRIMARY_BROKERS: config.primary.brokers.join(','),
    KDR_STANDBY_BROKERS: config.standby.brokers.join(','),
    AWS_ENDPOINT_URL: config.aws.endpoint!,
    AWS_REGION: config.aws.region,
    AWS_ACCESS_KEY_ID: config.aws.credentials!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: config.aws.credentials!.secretAccessKey,
    // The suite's IAM check evaluates what the packaged functions call, too.
    ...(process.env.KDR_AWS_CALL_LOG ? { KDR_AWS_CALL_LOG: process.env.KDR_AWS_CALL_LOG } : {}),
    ...environment,
  };
}

/**
 * The stack packaged for the lab (`sls package --stage local`) with the event source reading `topic`
 * and the failover and failback functions switching it, then run in the lab as Lambda runs it. The
 * lab's brokers take no authentication: the mapping says `none`, which the template allows inside a
 * VPC, so the params name one (the lab ignores it).
 */
export async function startLambdaLab(options: {
  topic: string;
  pair: string;
  params?: string[];
  environment: Record<string, string>;
  eventSource?: EventSourceOptions;
  schedules?: boolean;
  overrides?: Record<string, Partial<FunctionSpec>>;
}): Promise<LambdaLab> {
  const runtime = await ensureLambdaRuntime(labPaths().cache);
  const { dir, templatePath } = await packageStack({
    stage: 'local',
    prefix: 'kdr-lambda-lab-',
    params: [
      `topics=${options.topic}`,
      `pair=${options.pair}`,
      'primaryAuthType=none',
      'vpcSubnets=subnet-lab',
      'vpcSecurityGroups=sg-lab',
      'mirrorFunctionName=kdr-local-mirror',
      ...(options.params ?? []),
    ],
  });
  return LambdaLab.start({
    stack: loadStack(templatePath),
    packagedDir: dir,
    primary: kafkaFor('primary'),
    runtime,
    logDir: labPaths().logs,
    region: config.aws.region,
    environment: lambdaEnvironment(options.environment),
    ...(options.eventSource ? { eventSource: options.eventSource } : {}),
    ...(options.schedules !== undefined ? { schedules: options.schedules } : {}),
    ...(options.overrides ? { overrides: options.overrides } : {}),
  });
}

/** An SDK client of the lab's Lambda API: what an operator's `aws lambda invoke` would call. */
export function labLambdaClient(lab: LambdaLab): LambdaClient {
  return new LambdaClient({
    region: config.aws.region,
    endpoint: lab.api.url,
    credentials: config.aws.credentials!,
  });
}

export async function invokeFunction(client: LambdaClient, functionName: string, payload: unknown) {
  const answer = await client.send(
    new InvokeCommand({ FunctionName: functionName, Payload: Buffer.from(JSON.stringify(payload)) }),
  );
  const body = answer.Payload ? JSON.parse(Buffer.from(answer.Payload).toString('utf8')) : null;
  return { statusCode: answer.StatusCode, functionError: answer.FunctionError, body };
}

export async function mappingStates(client: LambdaClient, functionName: string): Promise<string[]> {
  const list = await client.send(new ListEventSourceMappingsCommand({ FunctionName: functionName }));
  return (list.EventSourceMappings ?? []).map((m) => m.State ?? '');
}
