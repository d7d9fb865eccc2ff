import { inFunction } from '../src/adapters/aws/callLog.ts';
import { loadConfig } from '../src/config.ts';
import { failoverRequestSchema, parseRequest } from '../src/events/operations.ts';
import { inAws, invocationBudget, invokeSelf, lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { emitMetrics } from '../src/metrics.ts';
import { failoverDeps } from '../src/operations.ts';
import { createRuntime, type Runtime } from '../src/runtime.ts';
import { abortFailover, runFailover } from '../src/services/failover.ts';

/**
 * Invoked failover: `sls invoke -f failover --data '{"mode":"planned","timeoutSeconds":60}'`.
 * The payload is validated before anything is read or written. In AWS the first invocation begins the
 * failover and answers at once with its operation id; continuations (`{"operationId":…}`) run its phases,
 * each until its own time runs out. A retried continuation resumes the same operation, never a new one.
 * `{"abort":true}` aborts the failover in progress while the standby is not yet active.
 */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'failover', pair: config.pair });
const credentials = lambdaCredentials(config);
let runtime: Runtime | undefined;

async function handle(
  event: unknown,
  context?: { awsRequestId?: string; getRemainingTimeInMillis?: () => number },
) {
  const request = parseRequest(failoverRequestSchema, event, config.pair, 'failover');
  runtime ??= createRuntime(await credentials(), logger);
  const deps = failoverDeps(runtime, context?.awsRequestId ? `lambda/${context.awsRequestId}` : undefined);
  if (request.abort) return { status: 'aborted', ...(await abortFailover(deps)) };
  const budget = invocationBudget(context, request.timeoutSeconds * 1000);
  for (const warning of budget.warnings) logger.warn(warning);
  const handOver = inAws() && !request.wait && !request.operationId;
  try {
    const outcome = await runFailover(deps, {
      ...(request.mode ? { mode: request.mode } : {}),
      timeoutMs: request.timeoutSeconds * 1000,
      ...(handOver ? { runDeadline: 0 } : budget.runDeadline ? { runDeadline: budget.runDeadline } : {}),
      ...(request.operationId ? { operationId: request.operationId } : {}),
    });
    if (outcome.status === 'in-progress') {
      const { abort: _abort, wait: _wait, ...rest } = request;
      const continued = await invokeSelf(config.aws.region, { ...rest, operationId: outcome.operationId });
      return { ...outcome, continued, warnings: budget.warnings };
    }
    const report = outcome.report;
    emitMetrics(
      'kdr',
      { Pair: config.pair },
      {
        FailoverRtoMs: { value: report.rtoMs, unit: 'Milliseconds' },
        FailoverRpoRecords: { value: report.rpo.records, unit: 'Count' },
        FailoverRpoSeconds: { value: report.rpo.seconds, unit: 'Seconds' },
        // 0: the two figures above are lower bounds (an unplanned failover, or producer clocks skewed).
        FailoverRpoKnown: { value: report.rpo.known && report.rpo.secondsKnown ? 1 : 0, unit: 'Count' },
      },
    );
    return { ...report, status: 'done', warnings: [...budget.warnings, ...report.warnings] };
  } finally {
    // The fence closed the engine; the next invocation builds a new runtime.
    await runtime.close();
    runtime = undefined;
  }
}

/** The Lambda entry point: the AWS calls it makes are attributed to the failover function's role. */
export const handler = inFunction('failover', handle);
