import path from 'node:path';
import { execa, type Options } from 'execa';
import { REPO_ROOT } from '../../infra/local/paths.ts';

export const KDR_BIN = path.join(REPO_ROOT, 'bin', 'kdr.mjs');

/** Runs the kdr CLI as an operator would; never throws on a non-zero exit. */
export function runKdr(
  args: string[],
  options: { env?: Record<string, string | undefined>; timeoutMs?: number } = {},
) {
  const execaOptions: Options = {
    reject: false,
    timeout: options.timeoutMs ?? 300_000,
    env: { ...process.env, ...options.env },
    extendEnv: false,
    cwd: REPO_ROOT,
  };
  return execa(process.execPath, [KDR_BIN, ...args], execaOptions) as Promise<{
    exitCode: number;
    stdout: string;
    stderr: string;
  }>;
}

/** The handler's result: the last pretty-printed JSON document sls wrote (from a line "{"), once complete. */
function printedResult(stdout: string): Record<string, unknown> | undefined {
  const at = stdout.startsWith('{\n') ? 0 : stdout.lastIndexOf('\n{\n') + 1;
  if (at === 0 && !stdout.startsWith('{\n')) return undefined;
  try {
    return JSON.parse(stdout.slice(at)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * `sls invoke local --stage local -f <fn>`: the function run with the environment serverless.yml gives
 * it for these params (what a deploy would give it), without AWS credentials from the shell. Lambda
 * freezes a container once its async handler returned, keeping the clients a warm container reuses;
 * sls instead waits for every socket to close, so the process is ended once the result is printed.
 */
export async function invokeLocal(
  fn: string,
  options: {
    data?: unknown;
    eventPath?: string;
    params?: Record<string, string>;
    env?: Record<string, string>;
    timeoutMs?: number;
  } = {},
) {
  const shellEnv = { ...process.env };
  for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE']) delete shellEnv[key];
  // sls itself, not through npx: a signal to npx would not reach it.
  const sls = path.join(REPO_ROOT, 'node_modules', 'serverless', 'bin', 'serverless.js');
  const args = [sls, 'invoke', 'local', '--stage', 'local', '-f', fn];
  if (options.data !== undefined) args.push('--data', JSON.stringify(options.data));
  if (options.eventPath) args.push('--path', options.eventPath);
  for (const [k, v] of Object.entries(options.params ?? {})) args.push(`--param=${k}=${v}`);
  for (const [k, v] of Object.entries(options.env ?? {})) args.push('-e', `${k}=${v}`);
  const child = execa(process.execPath, args, {
    cwd: REPO_ROOT,
    env: shellEnv,
    extendEnv: false,
    reject: false,
    timeout: options.timeoutMs ?? 240_000,
  });
  let stdout = '';
  let result: Record<string, unknown> | undefined;
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    result ??= printedResult(stdout);
    if (result) child.kill('SIGTERM');
  });
  const run = await child;
  const failed = !result || 'errorType' in result || (run.exitCode !== 0 && !run.isTerminated);
  return { exitCode: failed ? run.exitCode || 1 : 0, stdout, stderr: String(run.stderr), result };
}
