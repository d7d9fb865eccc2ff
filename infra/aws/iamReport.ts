import { writeFileSync } from 'node:fs';
import { buildFunctions } from '../build.ts';
import { deniedCalls, readCallLog } from './awsCalls.ts';
import { packageStack } from './packageStack.ts';
import { loadStack, roleOfFunction } from './stackIam.ts';

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
  const { templatePath } = await packageStack({ stage: 'local', prebuilt: true, prefix: 'kdr-iam-' });
  const stack = loadStack(templatePath, accountId);
  const result = await deniedCalls(calls, stack, (fn) => roleOfFunction(stack, fn));
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
