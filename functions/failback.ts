import { loadConfig } from '../src/config.ts';
import { failbackRequestSchema, parseRequest } from '../src/events/operations.ts';
import { lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { failbackDeps } from '../src/operations.ts';
import { createRuntime } from '../src/runtime.ts';
import { failback } from '../src/services/failback.ts';

/** Invoked failback: `sls invoke -f failback --data '{"timeoutSeconds":120}'`. */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'failback', pair: config.pair });
const credentials = lambdaCredentials(config);

export async function handler(event: unknown, context?: { awsRequestId?: string }) {
  const request = parseRequest(failbackRequestSchema, event, config.pair, 'failback');
  const runtime = createRuntime(await credentials(), logger);
  const { deps, close } = failbackDeps(
    runtime,
    context?.awsRequestId ? `lambda/${context.awsRequestId}` : undefined,
  );
  try {
    return await failback(deps, { timeoutMs: request.timeoutSeconds * 1000 });
  } finally {
    await close();
    await runtime.close();
  }
}
