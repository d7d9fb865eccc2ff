import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Resource, Stack } from '../../../infra/aws/stackIam.ts';
import { labFunctions, rateMs, scheduleDefinitions, scheduledEvent } from '../../../infra/local/lambdaLab.ts';
import { LabError } from '../../../src/errors.ts';

const stackOf = (resources: Record<string, Resource>): Stack => ({
  accountId: '000000000000',
  region: 'us-east-1',
  resources,
});

const fn = (name: string, over: Record<string, unknown> = {}): Resource => ({
  Type: 'AWS::Lambda::Function',
  Properties: {
    FunctionName: `kdr-local-${name}`,
    Handler: `functions/${name}.handler`,
    Code: { S3Bucket: 'bucket', S3Key: `serverless/kdr/local/1700000000000/${name}.zip` },
    Timeout: 900,
    MemorySize: 1024,
    Environment: { Variables: { KDR_STAGE: 'local', KDR_FUNCTION: name } },
    ...over,
  },
});

const rule = (Properties: Record<string, unknown>): Resource => ({ Type: 'AWS::Events::Rule', Properties });

const refusal = (expression: string) => {
  try {
    rateMs(expression);
  } catch (error) {
    return error;
  }
  throw new Error(`expected ${expression} to be refused`);
};

describe('rateMs', () => {
  it('reads minutes, hours and days, singular for 1 and plural otherwise', () => {
    expect(rateMs('rate(1 minute)')).toBe(60_000);
    expect(rateMs('rate(5 minutes)')).toBe(300_000);
    expect(rateMs('rate(1 hour)')).toBe(3_600_000);
    expect(rateMs('rate(3 hours)')).toBe(10_800_000);
    expect(rateMs('rate(1 day)')).toBe(86_400_000);
    expect(rateMs('rate(2 days)')).toBe(172_800_000);
  });

  it.each([
    'rate(1 minutes)',
    'rate(5 minute)',
    'rate(0 minutes)',
    'rate(2 hour)',
    'rate(1 days)',
    'rate(5 seconds)',
    'cron(0 * * * ? *)',
  ])('refuses %s, quoting it', (expression) => {
    const error = refusal(expression);
    expect(error).toBeInstanceOf(LabError);
    expect((error as LabError).code).toBe('LAB_STATE_CONFLICT');
    expect((error as LabError).message).toContain(JSON.stringify(expression));
  });
});

describe('scheduledEvent', () => {
  it("is EventBridge's Scheduled Event, its time without milliseconds", () => {
    const ruleArn = 'arn:aws:events:eu-west-1:000000000000:rule/MonitorEventsRuleSchedule1';
    const event = scheduledEvent(ruleArn, 'eu-west-1', new Date('2026-12-02T10:00:00.789Z'));
    expect(event).toEqual({
      version: '0',
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      account: '000000000000',
      time: '2026-12-02T10:00:00Z',
      region: 'eu-west-1',
      resources: [ruleArn],
      detail: {},
    });
  });

  it('gives every event its own id', () => {
    const at = new Date('2026-12-02T10:00:00Z');
    expect(scheduledEvent('r', 'us-east-1', at).id).not.toBe(scheduledEvent('r', 'us-east-1', at).id);
    expect(scheduledEvent('r', 'us-east-1', at).time).toBe('2026-12-02T10:00:00Z');
  });
});

describe('scheduleDefinitions', () => {
  it('gives one definition per target of an enabled schedule rule, none for a disabled one', () => {
    const stack = stackOf({
      MonitorEventsRuleSchedule1: rule({
        ScheduleExpression: 'rate(1 minute)',
        State: 'ENABLED',
        Targets: [{ Arn: 'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-monitor', Id: 'm' }],
      }),
      SnapshotEventsRuleSchedule1: rule({
        ScheduleExpression: 'rate(1 hour)',
        State: 'DISABLED',
        Targets: [{ Arn: 'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-snapshot', Id: 's' }],
      }),
      MonitorLambdaFunction: fn('monitor'),
    });
    expect(scheduleDefinitions(stack)).toEqual([
      {
        logicalId: 'MonitorEventsRuleSchedule1',
        expression: 'rate(1 minute)',
        targetArn: 'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-monitor',
      },
    ]);
  });

  it('skips an event-pattern rule and gives each of several targets', () => {
    const stack = stackOf({
      PatternRule: rule({ EventPattern: { source: ['aws.s3'] }, Targets: [{ Arn: 'x' }] }),
      Twice: rule({ ScheduleExpression: 'rate(5 minutes)', Targets: [{ Arn: 'a' }, { Arn: 'b' }] }),
    });
    expect(scheduleDefinitions(stack).map((d) => [d.logicalId, d.targetArn])).toEqual([
      ['Twice', 'a'],
      ['Twice', 'b'],
    ]);
  });
});

describe('labFunctions', () => {
  const packagedDir = path.join('/packaged', '.serverless');

  const stack = () =>
    stackOf({
      MirrorLambdaFunction: fn('mirror', { ReservedConcurrentExecutions: 2 }),
      FailoverLambdaFunction: fn('failover', { Timeout: 60, MemorySize: 512 }),
      MirrorEventInvokeConfig: {
        Type: 'AWS::Lambda::EventInvokeConfig',
        Properties: {
          FunctionName: 'kdr-local-mirror',
          Qualifier: '$LATEST',
          MaximumRetryAttempts: 0,
          MaximumEventAgeInSeconds: 120,
        },
      },
      MonitorEventsRuleSchedule1: rule({ ScheduleExpression: 'rate(1 minute)', Targets: [{ Arn: 'x' }] }),
    });

  it('gives each function its spec from the template', () => {
    const functions = labFunctions(stack(), packagedDir);
    expect(functions.map((f) => f.functionName)).toEqual(['kdr-local-mirror', 'kdr-local-failover']);
    expect(functions[0]!.spec).toEqual({
      name: 'mirror',
      zip: path.join(packagedDir, 'mirror.zip'),
      handler: 'functions/mirror.handler',
      environment: { KDR_STAGE: 'local', KDR_FUNCTION: 'mirror' },
      timeoutSeconds: 900,
      memoryMb: 1024,
    });
    expect(functions[1]!.spec).toMatchObject({ name: 'failover', timeoutSeconds: 60, memoryMb: 512 });
  });

  it("picks up the function's EventInvokeConfig by FunctionName, Lambda's defaults without one", () => {
    const [mirror, failover] = labFunctions(stack(), packagedDir);
    expect(mirror!.maximumRetryAttempts).toBe(0);
    expect(mirror!.maximumEventAgeSeconds).toBe(120);
    expect(failover!.maximumRetryAttempts).toBe(2);
    expect(failover!.maximumEventAgeSeconds).toBe(21_600);
  });

  it('carries ReservedConcurrentExecutions only when the template sets it', () => {
    const [mirror, failover] = labFunctions(stack(), packagedDir);
    expect(mirror!.reservedConcurrency).toBe(2);
    expect(failover).not.toHaveProperty('reservedConcurrency');
  });

  it('applies overrides by short name to that function only', () => {
    const [mirror, failover] = labFunctions(stack(), packagedDir, { failover: { timeoutSeconds: 5 } });
    expect(failover!.spec.timeoutSeconds).toBe(5);
    expect(failover!.spec.memoryMb).toBe(512);
    expect(mirror!.spec.timeoutSeconds).toBe(900);
  });

  it('refuses a function variable that did not resolve to a string', () => {
    const s = stackOf({
      MirrorLambdaFunction: fn('mirror', { Environment: { Variables: { X: { Ref: 'Missing' } } } }),
    });
    expect(() => labFunctions(s, packagedDir)).toThrow(LabError);
    expect(() => labFunctions(s, packagedDir)).toThrow(/MirrorLambdaFunction variable X/);
  });
});
