import { InvokeCommand, LambdaClient, ListEventSourceMappingsCommand } from '@aws-sdk/client-lambda';
import { packageStack } from '../../infra/aws/packageStack.ts';
import { loadStack } from '../../infra/aws/stackIam.ts';
import type { EventSourceOptions } from '../../infra/local/kafkaEventSource.ts';
import { LAB_LAMBDA_PARAMS, LambdaLab, labLambdaEnvironment } from '../../infra/local/lambdaLab.ts';
import { ensureLambdaRuntime, type FunctionSpec } from '../../infra/local/lambdaRuntime.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { config, kafkaFor } from './lab.ts';

/** A container's environment in the suite's lab, with `environment` (a pair's own settings) added. */
export const lambdaEnvironment = (environment: Record<string, string> = {}) =>
  labLambdaEnvironment(config, environment);

/**
 * The stack packaged for the lab (`sls package --stage local`, LAB_LAMBDA_PARAMS) with the event source
 * reading `topic`, then run in the lab as Lambda runs it.
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
    // The bundles are built once per test file (buildFunctions), not once per package.
    prebuilt: true,
    params: [
      `topics=${options.topic}`,
      `pair=${options.pair}`,
      ...LAB_LAMBDA_PARAMS,
      ...(options.params ?? []),
    ],
  });
  return LambdaLab.start({
    stack: loadStack(templatePath),
    packagedDir: dir,
    primary: kafkaFor('primary'),
    primaryBrokers: config.primary.brokers,
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
