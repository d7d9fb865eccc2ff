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
