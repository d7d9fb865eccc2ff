import { randomUUID } from 'node:crypto';
import { CreateQueueCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Kafka } from 'kafkajs';
import type { KdrConfig } from '../../src/config.ts';
import { LabError } from '../../src/errors.ts';
import type { Stack } from '../aws/stackIam.ts';
import {
  type EventSourceOptions,
  initialMappingState,
  KafkaEventSource,
  mappingDefinitions,
} from './kafkaEventSource.ts';
import {
  type DeadLetterSink,
  LAB_ACCOUNT,
  type LabFunction,
  LambdaApi,
  type LambdaApiOptions,
} from './lambdaApi.ts';
import { type FunctionSpec, functionSpec } from './lambdaRuntime.ts';

/**
 * A packaged stack run in the lab as Lambda runs it: every function in emulated containers behind the
 * lab's Lambda API, every Kafka event source mapping polled by the lab's event source, every schedule
 * rule firing its target asynchronously.
 */

/**
 * An EventBridge rate expression in milliseconds: "rate(1 minute)", "rate(5 minutes)"; the unit is
 * singular for 1 and plural otherwise (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html).
 */
export function rateMs(expression: string): number {
  const m = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression.trim());
  if (!m)
    throw new LabError(
      'LAB_STATE_CONFLICT',
      `schedule ${JSON.stringify(expression)}: the lab runs rate(<n> <unit>) schedules only`,
    );
  const n = Number(m[1]);
  const unit = m[2]!;
  if (n === 0 || (n === 1) !== !unit.endsWith('s'))
    throw new LabError(
      'LAB_STATE_CONFLICT',
      `schedule ${JSON.stringify(expression)}: expected a positive value, a singular unit for 1 and plural otherwise`,
    );
  const per = unit.startsWith('minute') ? 60_000 : unit.startsWith('hour') ? 3_600_000 : 86_400_000;
  return n * per;
}

/** The event a schedule rule gives its target (https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-events.html). */
export function scheduledEvent(ruleArn: string, region: string, at: Date) {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: LAB_ACCOUNT,
    time: at.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region,
    resources: [ruleArn],
    detail: {},
  };
}

export interface ScheduleDefinition {
  logicalId: string;
  expression: string;
  targetArn: string;
}

export function scheduleDefinitions(stack: Stack): ScheduleDefinition[] {
  const found: ScheduleDefinition[] = [];
  for (const [logicalId, resource] of Object.entries(stack.resources)) {
    if (resource.Type !== 'AWS::Events::Rule') continue;
    const p = resource.Properties as {
      ScheduleExpression?: string;
      State?: string;
      Targets?: { Arn: string }[];
    };
    if (!p.ScheduleExpression || p.State === 'DISABLED') continue;
    for (const target of p.Targets ?? [])
      found.push({ logicalId, expression: p.ScheduleExpression, targetArn: String(target.Arn) });
  }
  return found;
}

/** The stack's functions, with their EventInvokeConfig (Lambda's defaults: 2 retries, 6 hours). */
export function labFunctions(
  stack: Stack,
  packagedDir: string,
  overrides: Record<string, Partial<FunctionSpec>> = {},
): LabFunction[] {
  const functions: LabFunction[] = [];
  for (const [logicalId, resource] of Object.entries(stack.resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const name = logicalId.replace(/LambdaFunction$/, '');
    const short = `${name[0]!.toLowerCase()}${name.slice(1)}`;
    const p = resource.Properties as {
      FunctionName: string;
      ReservedConcurrentExecutions?: unknown;
      DeadLetterConfig?: { TargetArn?: string };
    };
    const config = Object.values(stack.resources).find(
      (r) =>
        r.Type === 'AWS::Lambda::EventInvokeConfig' &&
        (r.Properties as { FunctionName?: string }).FunctionName === p.FunctionName,
    )?.Properties as { MaximumRetryAttempts?: number; MaximumEventAgeInSeconds?: number } | undefined;
    functions.push({
      spec: { ...functionSpec(stack, packagedDir, short), ...overrides[short] },
      functionName: String(p.FunctionName),
      ...(typeof p.ReservedConcurrentExecutions === 'number'
        ? { reservedConcurrency: p.ReservedConcurrentExecutions }
        : {}),
      maximumRetryAttempts: config?.MaximumRetryAttempts ?? 2,
      maximumEventAgeSeconds: config?.MaximumEventAgeInSeconds ?? 21_600,
      ...(p.DeadLetterConfig?.TargetArn ? { deadLetterArn: String(p.DeadLetterConfig.TargetArn) } : {}),
    });
  }
  return functions;
}

/**
 * What a container gets besides its function's variables, as Lambda gives it: its role's credentials
 * and region; and the lab's endpoints (the template's own under the default ports, shifted under
 * KDR_LAB_PORT_OFFSET).
 */
export function labLambdaEnvironment(
  config: KdrConfig,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    KDR_PRIMARY_BROKERS: config.primary.brokers.join(','),
    KDR_STANDBY_BROKERS: config.standby.brokers.join(','),
    ...(config.aws.endpoint ? { AWS_ENDPOINT_URL: config.aws.endpoint } : {}),
    AWS_REGION: config.aws.region,
    ...(config.aws.credentials
      ? {
          AWS_ACCESS_KEY_ID: config.aws.credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: config.aws.credentials.secretAccessKey,
        }
      : {}),
    // The suite's IAM check evaluates what the packaged functions call, too.
    ...(process.env.KDR_AWS_CALL_LOG ? { KDR_AWS_CALL_LOG: process.env.KDR_AWS_CALL_LOG } : {}),
    ...extra,
  };
}

/**
 * The params that package the stack for the lab: its brokers take no authentication, so the mapping
 * says `none`, which the template allows inside a VPC (the params name one; the lab ignores it); the
 * failover and failback functions switch the mirror's mappings.
 */
export const LAB_LAMBDA_PARAMS = [
  'primaryAuthType=none',
  'vpcSubnets=subnet-lab',
  'vpcSecurityGroups=sg-lab',
  'mirrorFunctionName=kdr-local-mirror',
];

/**
 * Dead-letter queues in moto's SQS: the queue named by the ARN's last part, created when missing; the
 * event as its body with the attributes Lambda adds (RequestID, ErrorCode, ErrorMessage).
 */
export function sqsDeadLetters(client: SQSClient): DeadLetterSink {
  return async (fn, payload, failure) => {
    const name = fn.deadLetterArn!.split(':').at(-1)!;
    const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: name }));
    const text = (value: string) => ({ DataType: 'String', StringValue: value });
    await client.send(
      new SendMessageCommand({
        QueueUrl,
        MessageBody: JSON.stringify(payload),
        MessageAttributes: {
          RequestID: text(failure.requestId),
          ErrorCode: { DataType: 'Number', StringValue: '200' },
          ErrorMessage: text(failure.errorMessage),
        },
      }),
    );
  };
}

export interface LambdaLabOptions extends LambdaApiOptions {
  stack: Stack;
  packagedDir: string;
  /** A client of the primary as the lab reaches it (the template's bootstrap may name other ports). */
  primary: Kafka;
  /** What an MSK mapping's events name as bootstrapServers (the template names only the cluster ARN). */
  primaryBrokers?: string[];
  eventSource?: EventSourceOptions;
  /** Start the schedule rules (default true). */
  schedules?: boolean;
  /** Drills: a function's spec changed from the template's (a shorter timeout, say), by short name. */
  overrides?: Record<string, Partial<FunctionSpec>>;
  /** The API's port (0: the kernel's choice). */
  port?: number;
}

export class LambdaLab {
  readonly eventSources: KafkaEventSource[] = [];
  private readonly timers: NodeJS.Timeout[] = [];

  private constructor(
    readonly api: LambdaApi,
    readonly schedules: ScheduleDefinition[],
  ) {}

  static async start(options: LambdaLabOptions): Promise<LambdaLab> {
    const api = new LambdaApi(options);
    for (const fn of labFunctions(options.stack, options.packagedDir, options.overrides)) api.addFunction(fn);
    await api.listen(options.port ?? 0);
    const lab = new LambdaLab(api, scheduleDefinitions(options.stack));
    for (const mapping of mappingDefinitions(options.stack)) {
      const definition =
        mapping.kind === 'aws:kafka' && options.primaryBrokers
          ? { ...mapping, bootstrapServers: options.primaryBrokers }
          : mapping;
      const source = new KafkaEventSource(
        definition,
        initialMappingState(definition, randomUUID()),
        options.primary,
        definition.functionArn,
        api,
        options.eventSource,
      );
      api.addMapping(source);
      lab.eventSources.push(source);
      if (definition.enabled) source.start();
    }
    if (options.schedules !== false) lab.startSchedules(options.region);
    return lab;
  }

  /** Each rule fires one rate after it was created, then every rate, as an asynchronous invocation. */
  private startSchedules(region: string): void {
    for (const s of this.schedules) {
      const ruleArn = `arn:aws:events:${region}:${LAB_ACCOUNT}:rule/${s.logicalId}`;
      this.timers.push(
        setInterval(
          () => this.api.invokeAsync(s.targetArn, scheduledEvent(ruleArn, region, new Date())),
          rateMs(s.expression),
        ),
      );
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    // The pollers stop first (no new batches), then the containers die, ending what is in flight.
    const closing = this.eventSources.map((s) => s.close());
    await this.api.close();
    await Promise.all(closing);
  }
}
