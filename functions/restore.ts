import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { inFunction, recordAwsCalls } from '../src/adapters/aws/callLog.ts';
import { loadConfig } from '../src/config.ts';
import { parseRequest } from '../src/events/operations.ts';
import { restoreRequestSchema } from '../src/events/restoreRequest.ts';
import { lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { emitMetrics } from '../src/metrics.ts';
import { checkRestoreTargetAllowed, restoreDeps, restoreServiceRequest } from '../src/operations.ts';
import { runRestore } from '../src/services/restore.ts';

/**
 * Invoked restore: `sls invoke -f restore --data '{"snapshotId":"…","target":"standby","topicPrefix":"r."}'`
 * with the options of `kdr restore` as JSON (`retentionMs`, `restamp` as --retention-ms, --restamp). The payload is validated before anything is read or written.
 * A restore that does not fit in this invocation saves its progress and, in AWS, invokes the function
 * again with the same payload to continue; the result says where it stands.
 */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'restore', pair: config.pair });
const credentials = lambdaCredentials(config);
/** Time kept in hand to save progress, re-invoke and return. */
const MARGIN_MS = 15_000;

async function handle(event: unknown, context?: { getRemainingTimeInMillis?: () => number }) {
  const request = parseRequest(restoreRequestSchema, event, config.pair, 'restore');
  checkRestoreTargetAllowed(config, request.target);
  const { deps, close } = restoreDeps(await credentials(), logger, request.target);
  try {
    const remaining = context?.getRemainingTimeInMillis?.();
    const result = await runRestore(deps, restoreServiceRequest(config, request), {
      ...(remaining !== undefined ? { deadline: Date.now() + remaining - MARGIN_MS } : {}),
      ...(request.verifiedSegments !== undefined ? { verifiedSegments: request.verifiedSegments } : {}),
      ...(request.verification !== undefined ? { verification: request.verification } : {}),
    });
    if (result.status === 'in-progress') {
      const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME;
      if (functionName) {
        const next = {
          ...request,
          ...(result.verifiedSegments !== undefined ? { verifiedSegments: result.verifiedSegments } : {}),
          ...(result.verification !== undefined ? { verification: result.verification } : {}),
        };
        const lambda = recordAwsCalls(new LambdaClient({ region: config.aws.region }));
        try {
          await lambda.send(
            new InvokeCommand({
              FunctionName: functionName,
              InvocationType: 'Event',
              Payload: Buffer.from(JSON.stringify(next)),
            }),
          );
        } finally {
          lambda.destroy();
        }
      }
      return { ...result, continued: Boolean(functionName) };
    }
    const report = result.report;
    emitMetrics(
      'kdr',
      { Pair: config.pair },
      {
        RestoreRecords: { value: report.records, unit: 'Count' },
        RestoreDurationMs: { value: report.durationMs, unit: 'Milliseconds' },
      },
    );
    return { status: 'complete', ...report };
  } finally {
    await close();
  }
}

/** The Lambda entry point: the AWS calls it makes are attributed to the restore function's role. */
export const handler = inFunction('restore', handle);
