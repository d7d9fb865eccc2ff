import { appendFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InvokeCommand, LambdaClient, ListEventSourceMappingsCommand } from '@aws-sdk/client-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';
import { deniedCalls, readCallLog } from '../../infra/aws/awsCalls.ts';
import { packageStack } from '../../infra/aws/packageStack.ts';
import { loadStack, roleOfFunction, type Stack } from '../../infra/aws/stackIam.ts';
import type { EventSourceOptions } from '../../infra/local/kafkaEventSource.ts';
import {
  LAB_LAMBDA_PARAMS,
  LambdaLab,
  labLambdaEnvironment,
  sqsDeadLetters,
} from '../../infra/local/lambdaLab.ts';
import { ensureLambdaRuntime, type FunctionSpec } from '../../infra/local/lambdaRuntime.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { config, kafkaFor } from './lab.ts';

/** The account the suite's IAM check evaluates in (moto's, which the lab's secrets' ARNs name). */
const IAM_ACCOUNT = '123456789012';

/** Each lab's packaged stack and the file its containers log their AWS calls to. */
const labIam = new WeakMap<LambdaLab, { stack: Stack; callLog: string }>();

/**
 * The AWS calls a lab's packaged functions made, evaluated against the roles of the template that lab
 * ran (not only the suite's stage-local one); they are added to the suite's log as well.
 */
export async function labIamCheck(lab: LambdaLab) {
  const { stack, callLog } = labIam.get(lab)!;
  const calls = readCallLog(callLog);
  if (process.env.KDR_AWS_CALL_LOG && existsSync(callLog))
    appendFileSync(process.env.KDR_AWS_CALL_LOG, readFileSync(callLog));
  return deniedCalls(calls, stack, (fn) => roleOfFunction(stack, fn));
}

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
  const callLog = path.join(mkdtempSync(path.join(os.tmpdir(), 'kdr-lab-calls-')), 'aws-calls.jsonl');
  const lab = await LambdaLab.start({
    stack: loadStack(templatePath),
    packagedDir: dir,
    primary: kafkaFor('primary'),
    primaryBrokers: config.primary.brokers,
    runtime,
    logDir: labPaths().logs,
    region: config.aws.region,
    environment: lambdaEnvironment({ ...options.environment, KDR_AWS_CALL_LOG: callLog }),
    ...(options.eventSource ? { eventSource: options.eventSource } : {}),
    ...(options.schedules !== undefined ? { schedules: options.schedules } : {}),
    ...(options.overrides ? { overrides: options.overrides } : {}),
    deadLetters: sqsDeadLetters(labSqsClient()),
  });
  labIam.set(lab, { stack: loadStack(templatePath, IAM_ACCOUNT), callLog });
  return lab;
}

/** moto's SQS, where the lab's dead-letter queues are. */
export function labSqsClient(): SQSClient {
  return new SQSClient({
    region: config.aws.region,
    endpoint: config.aws.endpoint!,
    credentials: config.aws.credentials!,
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
