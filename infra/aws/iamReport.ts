import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { buildFunctions } from '../build.ts';
import { REPO_ROOT } from '../local/paths.ts';
import { deniedCalls, readCallLog } from './awsCalls.ts';
import { functionRoles, loadStack } from './stackIam.ts';

/**
 * The suite's IAM check: every AWS call the functions made while the suite ran (KDR_AWS_CALL_LOG),
 * evaluated against the roles of the stack packaged for stage `local` (the lab's table and bucket
 * names, moto's account). Writes the report next to the log; any denied call is an error naming the
 * function, action and resource.
 */
export async function checkRecordedCalls(logPath: string, accountId = '123456789012'): Promise<string> {
  const calls = readCallLog(logPath);
  if (!calls.some((c) => c.function)) return 'IAM check: no function made an AWS call in this run';
  await buildFunctions();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-iam-'));
  const env: Record<string, string | undefined> = { ...process.env, KDR_PACKAGE_PREBUILT: '1' };
  for (const key of [
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_PROFILE',
    'AWS_SESSION_TOKEN',
    'KDR_AWS_CALL_LOG',
  ])
    delete env[key];
  await execa('npx', ['sls', 'package', '--stage', 'local', '--package', dir], {
    cwd: REPO_ROOT,
    env,
    extendEnv: false,
  });
  const stack = loadStack(path.join(dir, 'cloudformation-template-update-stack.json'), accountId);
  const roles = functionRoles(stack);
  const roleOf = (fn: string) => roles[`${fn[0]!.toUpperCase()}${fn.slice(1)}LambdaFunction`];
  const result = await deniedCalls(calls, stack, roleOf);
  writeFileSync(`${logPath}.report.json`, `${JSON.stringify(result, null, 2)}\n`);
  const summary = `IAM check: ${result.evaluated} distinct requests by ${Object.keys(result.byFunction).length} functions (${Object.entries(
    result.byFunction,
  )
    .map(([f, n]) => `${f} ${n}`)
    .join(', ')}), ${result.denied.length} denied (${logPath}.report.json)`;
  if (result.denied.length > 0)
    throw new Error(
      `${summary}:\n${result.denied.map((d) => `  ${d.function} (role ${d.role}) is not allowed ${d.action} on ${d.resource} (${d.call}; ${d.detail})`).join('\n')}`,
    );
  return summary;
}
