import { loadConfig } from '../src/config.ts';
import { failoverRequestSchema, parseRequest } from '../src/events/operations.ts';
import { lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { emitMetrics } from '../src/metrics.ts';
import { failoverDeps } from '../src/operations.ts';
import { createRuntime, type Runtime } from '../src/runtime.ts';
import { failover } from '../src/services/failover.ts';

/**
 * Invoked failover: `sls invoke -f failover --data '{"mode":"planned","timeoutSeconds":60}'`.
 * The payload is validated before anything is read or written; the report is the result.
 */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'failover', pair: config.pair });
const credentials = lambdaCredentials(config);
let runtime: Runtime | undefined;

export async function handler(event: unknown, context?: { awsRequestId?: string }) {
  const request = parseRequest(failoverRequestSchema, event, config.pair, 'failover');
  runtime ??= createRuntime(await credentials(), logger);
  const report = await failover(
    failoverDeps(runtime, context?.awsRequestId ? `lambda/${context.awsRequestId}` : undefined),
    {
      mode: request.mode,
      timeoutMs: request.timeoutSeconds * 1000,
    },
  );
  emitMetrics(
    'kdr',
    { Pair: config.pair },
    {
      FailoverRtoMs: { value: report.rtoMs, unit: 'Milliseconds' },
      FailoverRpoRecords: { value: report.rpo.records, unit: 'Count' },
      FailoverRpoSeconds: { value: report.rpo.seconds, unit: 'Seconds' },
    },
  );
  // The engine was closed by the failover (the mirror is fenced); the next invocation builds a new one.
  await runtime.close();
  runtime = undefined;
  return report;
}
