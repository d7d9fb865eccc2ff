import { inFunction } from '../src/adapters/aws/callLog.ts';
import { loadConfig } from '../src/config.ts';
import { failbackRequestSchema, parseRequest } from '../src/events/operations.ts';
import { inAws, invocationBudget, invokeSelf, lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { failbackDeps } from '../src/operations.ts';
import { createRuntime } from '../src/runtime.ts';
import { abortFailback, runFailback } from '../src/services/failback.ts';

/**
 * Invoked failback: `sls invoke -f failback --data '{"timeoutSeconds":120}'`. Like the failover
 * function: in AWS the first invocation begins it and answers with its operation id, continuations
 * (`{"operationId":…}`) run its phases; `{"abort":true}` aborts it while the primary is not yet active.
 */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'failback', pair: config.pair });
const credentials = lambdaCredentials(config);

async function handle(
  event: unknown,
  context?: { awsRequestId?: string; getRemainingTimeInMillis?: () => number },
) {
  const request = parseRequest(failbackRequestSchema, event, config.pair, 'failback');
  const runtime = createRuntime(await credentials(), logger);
  const { deps, close } = failbackDeps(
    runtime,
    context?.awsRequestId ? `lambda/${context.awsRequestId}` : undefined,
  );
  try {
    if (request.abort) return { status: 'aborted', ...(await abortFailback(deps)) };
    const budget = invocationBudget(context, request.timeoutSeconds * 1000);
    for (const warning of budget.warnings) logger.warn(warning);
    const handOver = inAws() && !request.wait && !request.operationId;
    const outcome = await runFailback(deps, {
      timeoutMs: request.timeoutSeconds * 1000,
      readOutage: request.readOutage,
      ...(handOver ? { runDeadline: 0 } : budget.runDeadline ? { runDeadline: budget.runDeadline } : {}),
      ...(request.operationId ? { operationId: request.operationId } : {}),
    });
    if (outcome.status === 'in-progress') {
      const { abort: _abort, wait: _wait, ...rest } = request;
      const continued = await invokeSelf(config.aws.region, { ...rest, operationId: outcome.operationId });
      return { ...outcome, continued, warnings: budget.warnings };
    }
    return { ...outcome.report, status: 'done', warnings: [...budget.warnings, ...outcome.report.warnings] };
  } finally {
    await close();
    await runtime.close();
  }
}

/** The Lambda entry point: the AWS calls it makes are attributed to the failback function's role. */
export const handler = inFunction('failback', handle);
