import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT } from '../local/paths.ts';

/**
 * `sls package` as a first deploy runs it, offline: no AWS credentials in its environment, and no call
 * log (packaging makes no call a function makes). Into a new directory under the system's temp dir.
 */

export interface PackageOptions {
  stage?: string;
  /** `name=value` stage params. */
  params?: string[];
  /** The bundles are already built (infra/build.ts): the plugin skips its own build. */
  prebuilt?: boolean;
  /** Name of the temp directory. */
  prefix?: string;
}

export interface Packaged {
  dir: string;
  templatePath: string;
  exitCode: number;
  output: string;
}

const NOT_PASSED_ON = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_PROFILE',
  'AWS_SESSION_TOKEN',
  'KDR_AWS_CALL_LOG',
];

/** Packages and returns how it ended, refused or not. */
export async function tryPackageStack(options: PackageOptions = {}): Promise<Packaged> {
  const dir = mkdtempSync(path.join(os.tmpdir(), options.prefix ?? 'kdr-package-'));
  const env: Record<string, string | undefined> = { ...process.env };
  for (const key of NOT_PASSED_ON) delete env[key];
  if (options.prebuilt) env.KDR_PACKAGE_PREBUILT = '1';
  const result = await execa(
    'npx',
    [
      'sls',
      'package',
      ...(options.stage ? ['--stage', options.stage] : []),
      '--package',
      dir,
      ...(options.params ?? []).map((p) => `--param=${p}`),
    ],
    { cwd: REPO_ROOT, env, extendEnv: false, reject: false, all: true },
  );
  return {
    dir,
    templatePath: path.join(dir, 'cloudformation-template-update-stack.json'),
    exitCode: result.exitCode ?? 1,
    output: String(result.all ?? ''),
  };
}

/** Packages, or throws with sls's output. */
export async function packageStack(options: PackageOptions = {}): Promise<Packaged> {
  const packaged = await tryPackageStack(options);
  if (packaged.exitCode !== 0)
    throw new Error(`sls package ${(options.params ?? []).join(' ')} failed:\n${packaged.output}`);
  return packaged;
}
