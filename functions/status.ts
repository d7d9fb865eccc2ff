import { inFunction } from '../src/adapters/aws/callLog.ts';
import { loadConfig } from '../src/config.ts';
import { emptyRequestSchema, parseRequest } from '../src/events/operations.ts';
import { lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { createRuntime, type Runtime } from '../src/runtime.ts';
import { pairStatus } from '../src/services/status.ts';

/**
 * Invoked status: `sls invoke -f status` returns what `kdr status --json` prints (state, epoch, history,
 * newest checkpoint, per-partition lag). Reads only.
 */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'status', pair: config.pair });
const credentials = lambdaCredentials(config);
let runtime: Runtime | undefined;

async function handle(event: unknown) {
  parseRequest(emptyRequestSchema, event, config.pair, 'status');
  runtime ??= createRuntime(await credentials(), logger);
  return pairStatus(runtime);
}

/** The Lambda entry point: the AWS calls it makes are attributed to the status function's role. */
export const handler = inFunction('status', handle);
