import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GetEventSourceMappingCommand,
  InvokeCommand,
  LambdaClient,
  ListEventSourceMappingsCommand,
  UpdateEventSourceMappingCommand,
} from '@aws-sdk/client-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  invokeAnswer,
  type LabFunction,
  LambdaApi,
  type MappingControl,
  type MappingState,
} from '../../../infra/local/lambdaApi.ts';
import type { Invocation } from '../../../infra/local/lambdaRuntime.ts';

describe('invokeAnswer', () => {
  it('answers a success 200 with the payload and no function error', () => {
    const answer = invokeAnswer({ outcome: 'ok', payload: { mirrored: 3, topics: ['a'] }, ms: 12 });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ mirrored: 3, topics: ['a'] });
    expect(answer.headers).not.toHaveProperty('x-amz-function-error');
    expect(answer.headers['content-type']).toBe('application/json');
  });

  it('answers a success without a payload as null', () => {
    expect(invokeAnswer({ outcome: 'ok', payload: undefined, ms: 1 }).body).toBe('null');
  });

  it('answers a function error 200 with x-amz-function-error Unhandled and the error', () => {
    const answer = invokeAnswer({ outcome: 'error', errorType: 'KdrError', errorMessage: 'fenced', ms: 3 });
    expect(answer.status).toBe(200);
    expect(answer.headers['x-amz-function-error']).toBe('Unhandled');
    expect(JSON.parse(answer.body)).toEqual({ errorType: 'KdrError', errorMessage: 'fenced' });
  });

  it('answers a timeout as the function error Sandbox.Timedout', () => {
    const message = 'Task timed out after 3.00 seconds';
    const answer = invokeAnswer({ outcome: 'timeout', message, ms: 3000 });
    expect(answer.status).toBe(200);
    expect(answer.headers['x-amz-function-error']).toBe('Unhandled');
    expect(JSON.parse(answer.body)).toEqual({ errorType: 'Sandbox.Timedout', errorMessage: message });
  });
});

const MIRROR_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-mirror';

const mirror: LabFunction = {
  // No container is started in these tests: the spec is never run.
  spec: {
    name: 'mirror',
    zip: '/nonexistent/mirror.zip',
    handler: 'mirror.handler',
    environment: {},
    timeoutSeconds: 3,
    memoryMb: 128,
  },
  functionName: 'kdr-local-mirror',
  maximumRetryAttempts: 2,
  maximumEventAgeSeconds: 21_600,
};

function control(UUID: string, FunctionArn: string, topic: string) {
  const calls: boolean[] = [];
  const state: MappingState = {
    UUID,
    FunctionArn,
    Topics: [topic],
    BatchSize: 1000,
    MaximumBatchingWindowInSeconds: 1,
    StartingPosition: 'TRIM_HORIZON',
    State: 'Enabled',
    StateTransitionReason: 'USER_INITIATED',
    LastModified: 1_764_000_000,
  };
  const mapping: MappingControl & { calls: boolean[] } = {
    state,
    calls,
    setEnabled(enabled) {
      calls.push(enabled);
      state.State = enabled ? 'Enabling' : 'Disabling';
    },
  };
  return mapping;
}

describe('LambdaApi over HTTP (no containers)', () => {
  let dir: string;
  let api: LambdaApi;
  let client: LambdaClient;
  let orders: ReturnType<typeof control>;
  let other: ReturnType<typeof control>;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-lambda-api-'));
    api = new LambdaApi({
      runtime: { rie: '/nonexistent', node: '/nonexistent', ric: '/nonexistent' },
      logDir: dir,
      region: 'us-east-1',
      environment: {},
    });
    api.addFunction(mirror);
    orders = control('7f0e3c1a-0000-4000-8000-000000000001', MIRROR_ARN, 'orders');
    other = control(
      '7f0e3c1a-0000-4000-8000-000000000002',
      'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-other',
      'payments',
    );
    api.addMapping(orders);
    api.addMapping(other);
    const url = await api.listen();
    expect(url).toBe(api.url);
    expect(api.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    client = new LambdaClient({
      endpoint: api.url,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
      maxAttempts: 1,
    });
  });

  afterEach(async () => {
    client.destroy();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('names functions by their ARN in the lab account and region', () => {
    expect(api.arnOf('kdr-local-mirror')).toBe(MIRROR_ARN);
  });

  it('lists every mapping', async () => {
    const answer = await client.send(new ListEventSourceMappingsCommand({}));
    expect(answer.EventSourceMappings?.map((m) => m.UUID)).toEqual([orders.state.UUID, other.state.UUID]);
    expect(answer.EventSourceMappings?.[0]).toMatchObject({
      FunctionArn: MIRROR_ARN,
      Topics: ['orders'],
      BatchSize: 1000,
      State: 'Enabled',
    });
  });

  it("lists a function's mappings by its name, its ARN and its ARN with :$LATEST", async () => {
    for (const FunctionName of ['kdr-local-mirror', MIRROR_ARN, `${MIRROR_ARN}:$LATEST`]) {
      const answer = await client.send(new ListEventSourceMappingsCommand({ FunctionName }));
      expect(
        answer.EventSourceMappings?.map((m) => m.UUID),
        FunctionName,
      ).toEqual([orders.state.UUID]);
    }
  });

  it('answers ResourceNotFoundException when listing the mappings of an unknown function', async () => {
    const error = await client
      .send(new ListEventSourceMappingsCommand({ FunctionName: 'kdr-local-nothing' }))
      .catch((e: unknown) => e);
    expect((error as Error).name).toBe('ResourceNotFoundException');
  });

  it('gets one mapping by UUID', async () => {
    const answer = await client.send(new GetEventSourceMappingCommand({ UUID: orders.state.UUID }));
    expect(answer.UUID).toBe(orders.state.UUID);
    expect(answer.FunctionArn).toBe(MIRROR_ARN);
    expect(answer.State).toBe('Enabled');
    expect(orders.calls).toEqual([]);
  });

  it('disables a mapping through its control and answers its state', async () => {
    const answer = await client.send(
      new UpdateEventSourceMappingCommand({ UUID: orders.state.UUID, Enabled: false }),
    );
    expect(orders.calls).toEqual([false]);
    expect(other.calls).toEqual([]);
    expect(answer.UUID).toBe(orders.state.UUID);
    expect(answer.State).toBe('Disabling');
    const again = await client.send(new GetEventSourceMappingCommand({ UUID: orders.state.UUID }));
    expect(again.State).toBe('Disabling');
    await client.send(new UpdateEventSourceMappingCommand({ UUID: orders.state.UUID, Enabled: true }));
    expect(orders.calls).toEqual([false, true]);
  });

  it('leaves the mapping alone on an update without Enabled', async () => {
    const answer = await client.send(
      new UpdateEventSourceMappingCommand({ UUID: orders.state.UUID, BatchSize: 10 }),
    );
    expect(orders.calls).toEqual([]);
    expect(answer.State).toBe('Enabled');
  });

  it('answers ResourceNotFoundException for an unknown UUID', async () => {
    const unknown = '00000000-0000-4000-8000-00000000dead';
    for (const command of [
      new GetEventSourceMappingCommand({ UUID: unknown }),
      new UpdateEventSourceMappingCommand({ UUID: unknown, Enabled: false }),
    ]) {
      const error = await client.send(command as GetEventSourceMappingCommand).catch((e: unknown) => e);
      expect((error as Error).name).toBe('ResourceNotFoundException');
      expect((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(404);
    }
    expect(orders.calls).toEqual([]);
  });

  it('answers ResourceNotFoundException to an Invoke of an unknown function, sync and async', async () => {
    for (const InvocationType of ['RequestResponse', 'Event'] as const) {
      const error = await client
        .send(
          new InvokeCommand({
            FunctionName: 'kdr-local-nothing',
            InvocationType,
            Payload: Buffer.from('{}'),
          }),
        )
        .catch((e: unknown) => e);
      expect((error as Error).name, InvocationType).toBe('ResourceNotFoundException');
      expect((error as Error).message).toContain('kdr-local-nothing');
    }
  });

  it('reports the registered functions without starting a container', () => {
    expect(api.functions()).toEqual([
      { name: 'mirror', functionName: 'kdr-local-mirror', busy: 0, idle: 0, invocations: 0, coldStarts: 0 },
    ]);
  });
});

/** The API with its containers replaced by a scripted answer per attempt (the queue is what is tested). */
class ScriptedApi extends LambdaApi {
  readonly attempts: unknown[] = [];
  constructor(
    private readonly answers: (Invocation | 'throttled')[],
    asyncRetryDelaysMs: number[],
  ) {
    super({
      runtime: { rie: '/nonexistent', node: '/nonexistent', ric: '/nonexistent' },
      logDir: os.tmpdir(),
      region: 'us-east-1',
      environment: {},
      asyncRetryDelaysMs,
    });
  }
  override async invoke(_name: string, payload: unknown) {
    this.attempts.push(payload);
    return this.answers.shift() ?? { outcome: 'ok' as const, payload: 'done', ms: 0 };
  }
}

const failure: Invocation = { outcome: 'error', errorType: 'Error', errorMessage: 'no', ms: 0 };

describe('LambdaApi asynchronous invocations', () => {
  it('retries a failed event as often as EventInvokeConfig says, then records how it ended', async () => {
    const api = new ScriptedApi([failure, failure, failure], [10, 20]);
    api.addFunction(mirror);
    expect(api.invokeAsync('kdr-local-mirror', { n: 1 })).toBe(true);
    await vi.waitFor(() => expect(api.asyncOutcomes('mirror')).toHaveLength(1));
    // The first attempt and MaximumRetryAttempts (2) retries.
    expect(api.attempts).toHaveLength(3);
    expect(api.asyncOutcomes('mirror')[0]).toMatchObject({ attempts: 3, outcome: 'error' });
    await api.close();
  });

  it('stops retrying once an attempt succeeds, and none with MaximumRetryAttempts 0', async () => {
    const api = new ScriptedApi([failure, failure], [10, 20]);
    api.addFunction(mirror);
    api.addFunction({
      ...mirror,
      spec: { ...mirror.spec, name: 'restore' },
      functionName: 'kdr-local-restore',
      maximumRetryAttempts: 0,
    });
    api.invokeAsync('kdr-local-restore', { n: 1 });
    await vi.waitFor(() => expect(api.asyncOutcomes('restore')).toHaveLength(1));
    expect(api.asyncOutcomes('restore')[0]).toMatchObject({ attempts: 1, outcome: 'error' });
    api.invokeAsync('kdr-local-mirror', { n: 2 });
    await vi.waitFor(() => expect(api.asyncOutcomes('mirror')).toHaveLength(1));
    expect(api.asyncOutcomes('mirror')[0]).toMatchObject({ attempts: 2, outcome: 'ok', result: 'done' });
    await api.close();
  });

  it('keeps a throttled event queued and drops an event older than MaximumEventAgeInSeconds', async () => {
    const api = new ScriptedApi(['throttled'], [10]);
    api.addFunction(mirror);
    api.addFunction({
      ...mirror,
      spec: { ...mirror.spec, name: 'checkpoint' },
      functionName: 'kdr-local-checkpoint',
      maximumEventAgeSeconds: -1,
    });
    api.invokeAsync('kdr-local-mirror', { n: 1 });
    await vi.waitFor(() => expect(api.asyncOutcomes('mirror')).toHaveLength(1), { timeout: 5000 });
    expect(api.asyncOutcomes('mirror')[0]).toMatchObject({ attempts: 1, outcome: 'ok' });
    expect(api.attempts).toHaveLength(2);
    api.invokeAsync('kdr-local-checkpoint', { n: 2 });
    await vi.waitFor(() => expect(api.asyncOutcomes('checkpoint')).toHaveLength(1));
    expect(api.asyncOutcomes('checkpoint')[0]).toMatchObject({ outcome: 'expired', attempts: 0 });
    await api.close();
  });

  it('close() does not wait out a queued retry', async () => {
    const api = new ScriptedApi([failure], [600_000]);
    api.addFunction(mirror);
    api.invokeAsync('kdr-local-mirror', { n: 1 });
    await vi.waitFor(() => expect(api.attempts).toHaveLength(1));
    const started = Date.now();
    await api.close();
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
