import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type FunctionSpec, type Invocation, LambdaContainer, type LambdaRuntime } from './lambdaRuntime.ts';

/**
 * The part of the Lambda API that kdr's functions and the lab call, served on loopback: Invoke
 * (synchronous and asynchronous), ListEventSourceMappings, GetEventSourceMapping and
 * UpdateEventSourceMapping. The functions reach it through AWS_ENDPOINT_URL_LAMBDA, the SDK's own
 * per-service endpoint variable, so their code is what runs in AWS.
 * API reference: https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html and
 * https://docs.aws.amazon.com/lambda/latest/api/API_UpdateEventSourceMapping.html
 */

export const LAB_ACCOUNT = '000000000000';

export interface LabFunction {
  spec: FunctionSpec;
  /** The deployed name (the template's FunctionName), which the functions see as their own. */
  functionName: string;
  /** The template's ReservedConcurrentExecutions, or none. */
  reservedConcurrency?: number;
  /** EventInvokeConfig: how often a failed asynchronous invocation is retried, and for how long. */
  maximumRetryAttempts: number;
  maximumEventAgeSeconds: number;
  /** DeadLetterConfig.TargetArn: where a failed asynchronous event goes once retries are spent. */
  deadLetterArn?: string;
}

/** Sends a failed asynchronous event to its function's dead-letter queue. */
export type DeadLetterSink = (
  fn: LabFunction,
  payload: unknown,
  failure: { requestId: string; errorMessage: string },
) => Promise<void>;

/** One event source mapping as ListEventSourceMappings answers it (the fields kdr and the lab read). */
export interface MappingState {
  UUID: string;
  FunctionArn: string;
  Topics: string[];
  BatchSize: number;
  MaximumBatchingWindowInSeconds: number;
  StartingPosition: string;
  State: 'Enabled' | 'Enabling' | 'Disabled' | 'Disabling';
  StateTransitionReason: string;
  /** "OK", or "PROBLEM: ..." when reading or committing failed (and is being tried again). */
  LastProcessingResult?: string;
  LastModified: number;
}

/** Someone that starts and stops what a mapping runs (the lab's Kafka event source). */
export interface MappingControl {
  state: MappingState;
  setEnabled(enabled: boolean): void;
  /** What `kdr lab status` shows of it besides its state (its group, what it delivered). */
  describe?(): Omit<MappingReport, keyof MappingState>;
}

/** A function's containers, as `kdr lab status` shows them. */
export interface FunctionReport {
  name: string;
  functionName: string;
  busy: number;
  idle: number;
  invocations: number;
  coldStarts: number;
}

/** A mapping as `kdr lab status` shows it: its state and what its poller reports. */
export interface MappingReport extends MappingState {
  consumerGroupId?: string;
  records?: number;
  invocations?: number;
  failures?: number;
  redeliveries?: number;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Answer {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(value) };
}

function apiError(status: number, type: string, message: string): Answer {
  return json(status, { Type: 'User', Message: message }, { 'x-amzn-errortype': type });
}

/** How an invocation ended, as the Lambda API tells it (a timeout and a crash are function errors). */
export function invokeAnswer(result: Invocation): Answer {
  const version = { 'x-amz-executed-version': '$LATEST' };
  if (result.outcome === 'ok') return json(200, result.payload ?? null, version);
  const error =
    result.outcome === 'timeout'
      ? { errorType: 'Sandbox.Timedout', errorMessage: result.message }
      : { errorType: result.errorType, errorMessage: result.errorMessage };
  return json(200, error, { ...version, 'x-amz-function-error': 'Unhandled' });
}

interface Pool {
  fn: LabFunction;
  idle: LambdaContainer[];
  busy: Set<LambdaContainer>;
  asyncQueue: { payload: unknown; attempt: number; queuedAt: number }[];
  invocations: number;
  coldStarts: number;
  /** How the asynchronous invocations ended (the newest 1,000), for drills and `lab status`. */
  asyncOutcomes: AsyncOutcome[];
}

export interface AsyncOutcome {
  payload: unknown;
  attempts: number;
  outcome: Invocation['outcome'] | 'expired';
  result?: unknown;
  /** Sent to the function's dead-letter queue (or why that failed). */
  deadLetter?: 'sent' | string;
}

export interface LambdaApiOptions {
  runtime: LambdaRuntime;
  logDir: string;
  region: string;
  /** What every container gets besides its function's variables (the lab's endpoints, credentials). */
  environment: Record<string, string>;
  /** Containers per function when the template reserves none (the lab has two cores). */
  defaultConcurrency?: number;
  /** Delays before the retries of a failed asynchronous invocation (Lambda: 1 min, then 2 min). */
  asyncRetryDelaysMs?: number[];
  /** Where failed asynchronous events of a function with a dead-letter queue go. */
  deadLetters?: DeadLetterSink;
}

export class LambdaApi {
  private readonly pools = new Map<string, Pool>();
  private readonly mappings = new Map<string, MappingControl>();
  private server: http.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private closed = false;
  /** Ends the waits of queued asynchronous retries when the API closes. */
  private readonly closing = new AbortController();
  private readonly pendingAsync = new Set<Promise<void>>();
  url = '';

  constructor(private readonly options: LambdaApiOptions) {}

  arnOf(functionName: string): string {
    return `arn:aws:lambda:${this.options.region}:${LAB_ACCOUNT}:function:${functionName}`;
  }

  addFunction(fn: LabFunction): void {
    this.pools.set(fn.functionName, {
      fn,
      idle: [],
      busy: new Set(),
      asyncQueue: [],
      invocations: 0,
      coldStarts: 0,
      asyncOutcomes: [],
    });
  }

  addMapping(control: MappingControl): void {
    this.mappings.set(control.state.UUID, control);
  }

  /** Name, partial ARN or ARN (with an optional :$LATEST) to the function's pool. */
  private pool(nameOrArn: string): Pool | undefined {
    const decoded = decodeURIComponent(nameOrArn);
    const name = decoded.replace(/^arn:aws:lambda:[^:]+:\d+:function:/, '').replace(/:\$LATEST$/, '');
    return this.pools.get(name);
  }

  functions(): FunctionReport[] {
    return [...this.pools.values()].map((p) => ({
      name: p.fn.spec.name,
      functionName: p.fn.functionName,
      busy: p.busy.size,
      idle: p.idle.length,
      invocations: p.invocations,
      coldStarts: p.coldStarts,
    }));
  }

  private byName(name: string): Pool {
    const pool = [...this.pools.values()].find((p) => p.fn.spec.name === name);
    if (!pool) throw new Error(`the lab's Lambda API has no function ${name}`);
    return pool;
  }

  /** The function's containers that are running an invocation now (for drills that kill one). */
  busyContainers(name: string): LambdaContainer[] {
    return [...this.byName(name).busy];
  }

  asyncOutcomes(name: string): AsyncOutcome[] {
    return [...this.byName(name).asyncOutcomes];
  }

  private acquire(pool: Pool): LambdaContainer | undefined {
    const reused = pool.idle.pop();
    if (reused) return reused;
    const limit = pool.fn.reservedConcurrency ?? this.options.defaultConcurrency ?? 4;
    if (pool.busy.size >= limit) return undefined;
    pool.coldStarts++;
    return new LambdaContainer(pool.fn.spec, this.options.runtime, {
      logDir: this.options.logDir,
      environment: {
        ...this.options.environment,
        AWS_LAMBDA_FUNCTION_NAME: pool.fn.functionName,
        AWS_ENDPOINT_URL_LAMBDA: this.url,
      },
    });
  }

  /**
   * One synchronous invocation in a free container (a new one, cold, when none is idle). A container
   * whose runtime died or timed out is not reused: Lambda replaces such an execution environment.
   */
  async invoke(nameOrArn: string, payload: unknown): Promise<Invocation | 'throttled' | 'not-found'> {
    const pool = this.pool(nameOrArn);
    if (!pool) return 'not-found';
    if (this.closed)
      return { outcome: 'error', errorType: 'Lab.Closed', errorMessage: 'the lab is stopping', ms: 0 };
    const container = this.acquire(pool);
    if (!container) return 'throttled';
    pool.busy.add(container);
    pool.invocations++;
    let result: Invocation;
    try {
      result = await container.invoke(payload);
    } catch (error) {
      // The emulator itself went away mid-invocation (a killed container): Lambda reports it as the
      // runtime exiting.
      result = { outcome: 'error', errorType: 'Runtime.ExitError', errorMessage: String(error), ms: 0 };
    }
    pool.busy.delete(container);
    const dead =
      result.outcome === 'timeout' ||
      (result.outcome === 'error' && result.errorType === 'Runtime.ExitError') ||
      !container.running();
    if (dead || this.closed) await container.kill();
    else pool.idle.push(container);
    return result;
  }

  /** An asynchronous invocation: queued, answered 202, run with EventInvokeConfig's retries and age. */
  invokeAsync(nameOrArn: string, payload: unknown): boolean {
    const pool = this.pool(nameOrArn);
    if (!pool) return false;
    pool.asyncQueue.push({ payload, attempt: 0, queuedAt: Date.now() });
    const drained = this.drain(pool).finally(() => this.pendingAsync.delete(drained));
    this.pendingAsync.add(drained);
    return true;
  }

  private wait(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.closing.signal }).catch(() => {});
  }

  private async drain(pool: Pool): Promise<void> {
    const event = pool.asyncQueue.shift();
    if (!event || this.closed) return;
    // "by default Lambda attempts to run it two more times, with a one-minute wait between the first two
    // attempts, and two minutes between the second and third"; throttled events go back to the queue,
    // retried "from 1 second after the first attempt to a maximum of 5 minutes"
    // (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
    const delays = this.options.asyncRetryDelaysMs ?? [60_000, 120_000];
    let throttled = 0;
    const record = async (outcome: AsyncOutcome) => {
      // "When ... Lambda discards the event": to the dead-letter queue if the function has one
      // (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html).
      if (outcome.outcome !== 'ok' && pool.fn.deadLetterArn && this.options.deadLetters) {
        const errorMessage =
          outcome.outcome === 'expired'
            ? 'event expired before it could be processed'
            : String(
                (outcome.result as { errorMessage?: string } | undefined)?.errorMessage ?? outcome.outcome,
              );
        outcome.deadLetter = await this.options
          .deadLetters(pool.fn, event.payload, {
            requestId: randomUUID(),
            errorMessage: errorMessage.slice(0, 1024),
          })
          .then(() => 'sent' as const)
          .catch((error: unknown) => `not sent: ${String(error)}`);
      }
      pool.asyncOutcomes.push(outcome);
      if (pool.asyncOutcomes.length > 1000) pool.asyncOutcomes.shift();
    };
    for (;;) {
      if (Date.now() - event.queuedAt > pool.fn.maximumEventAgeSeconds * 1000)
        return record({ payload: event.payload, attempts: event.attempt, outcome: 'expired' });
      const result = await this.invoke(pool.fn.functionName, event.payload);
      if (this.closed || result === 'not-found') return;
      if (result === 'throttled') {
        await this.wait(Math.min(300_000, 1000 * 2 ** throttled++));
        continue;
      }
      const ended = result.outcome === 'ok' || event.attempt >= pool.fn.maximumRetryAttempts;
      if (ended)
        return record({
          payload: event.payload,
          attempts: event.attempt + 1,
          outcome: result.outcome,
          result: result.outcome === 'ok' ? result.payload : result.outcome === 'error' ? result : undefined,
        });
      await this.wait(delays[Math.min(event.attempt, delays.length - 1)]!);
      event.attempt++;
    }
  }

  /** The containers and mappings, for `kdr lab status`. */
  labStatus(): { functions: FunctionReport[]; mappings: MappingReport[] } {
    return {
      functions: this.functions(),
      mappings: [...this.mappings.values()].map((m) => ({ ...m.state, ...m.describe?.() })),
    };
  }

  /** Kills every container of a function (the next invocation starts cold); how many there were. */
  async killContainers(name: string): Promise<number> {
    const pool = this.byName(name);
    const all = [...pool.idle.splice(0), ...pool.busy];
    await Promise.all(all.map((c) => c.kill()));
    return all.length;
  }

  /** Lab-only routes, beside the Lambda API's: status and container kills (drills of cold starts). */
  private async routeLab(method: string, url: URL) {
    if (method === 'GET' && url.pathname === '/lab/status') return json(200, this.labStatus());
    const kill = /^\/lab\/functions\/([^/]+)\/kill$/.exec(url.pathname);
    if (method === 'POST' && kill) {
      const name = decodeURIComponent(kill[1]!);
      if (!this.functions().some((f) => f.name === name))
        return json(404, {
          message: `no function ${name}; the lab runs ${this.functions()
            .map((f) => f.name)
            .join(', ')}`,
        });
      return json(200, { function: name, killed: await this.killContainers(name) });
    }
    return undefined;
  }

  private async route(method: string, url: URL, body: string, headers: http.IncomingHttpHeaders) {
    const lab = await this.routeLab(method, url);
    if (lab) return lab;
    const invokeMatch = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(url.pathname);
    if (invokeMatch && method === 'POST') return this.routeInvoke(invokeMatch[1]!, body, headers);
    const mappingPath = url.pathname.replace(/\/$/, '');
    if (mappingPath === '/2015-03-31/event-source-mappings' && method === 'GET') {
      const fn = url.searchParams.get('FunctionName');
      const target = fn ? this.pool(fn) : undefined;
      if (fn && !target) return apiError(404, 'ResourceNotFoundException', `Function not found: ${fn}`);
      const list = [...this.mappings.values()]
        .map((m) => m.state)
        .filter((s) => !target || s.FunctionArn === this.arnOf(target.fn.functionName));
      return json(200, { EventSourceMappings: list });
    }
    const one = /^\/2015-03-31\/event-source-mappings\/([^/]+)$/.exec(mappingPath);
    if (one) {
      const control = this.mappings.get(decodeURIComponent(one[1]!));
      if (!control)
        return apiError(
          404,
          'ResourceNotFoundException',
          `The resource you requested does not exist. (UUID ${one[1]})`,
        );
      if (method === 'PUT') {
        const update = JSON.parse(body || '{}') as { Enabled?: boolean };
        if (typeof update.Enabled === 'boolean') control.setEnabled(update.Enabled);
        return json(202, control.state);
      }
      if (method === 'GET') return json(200, control.state);
    }
    return apiError(
      400,
      'InvalidRequestContentException',
      `the lab's Lambda API does not serve ${method} ${url.pathname}`,
    );
  }

  private functionNotFound(name: string): Answer {
    return apiError(
      404,
      'ResourceNotFoundException',
      `Function not found: ${this.arnOf(decodeURIComponent(name))}`,
    );
  }

  private async routeInvoke(name: string, body: string, headers: http.IncomingHttpHeaders) {
    let payload: unknown;
    try {
      payload = body === '' ? {} : JSON.parse(body);
    } catch {
      return apiError(400, 'InvalidRequestContentException', 'Could not parse request body into json');
    }
    const type = String(headers['x-amz-invocation-type'] ?? 'RequestResponse');
    if (type === 'Event') {
      if (!this.invokeAsync(name, payload)) return this.functionNotFound(name);
      return { status: 202, headers: {}, body: '' };
    }
    if (type !== 'RequestResponse')
      return apiError(
        400,
        'InvalidParameterValueException',
        `InvocationType ${type} is not served by the lab`,
      );
    const result = await this.invoke(name, payload);
    if (result === 'not-found') return this.functionNotFound(name);
    if (result === 'throttled') return apiError(429, 'TooManyRequestsException', 'Rate Exceeded.');
    return invokeAnswer(result);
  }

  /** Serves on 127.0.0.1:`port` (0: a port the kernel picks). */
  async listen(port = 0): Promise<string> {
    const server = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (c: Buffer) => chunks.push(c));
      request.on('end', () => {
        const url = new URL(request.url ?? '/', 'http://127.0.0.1');
        this.route(request.method ?? 'GET', url, Buffer.concat(chunks).toString('utf8'), request.headers)
          .catch((error: unknown) => apiError(500, 'ServiceException', String(error)))
          .then((answer) => {
            response.writeHead(answer.status, answer.headers);
            response.end(answer.body);
          });
      });
    });
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    return this.url;
  }

  /** Stops serving and kills every container (their invocations end as the runtime's exit). */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    const all = [...this.pools.values()].flatMap((p) => [...p.idle, ...p.busy]);
    await Promise.all(all.map((c) => c.kill()));
    await Promise.allSettled([...this.pendingAsync]);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
