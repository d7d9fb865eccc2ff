import { inFunction } from '../src/adapters/aws/callLog.ts';
import { loadConfig } from '../src/config.ts';
import { EventError } from '../src/errors.ts';
import { lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { emitMetrics } from '../src/metrics.ts';
import { snapshotDeps } from '../src/operations.ts';
import { createRuntime, type Runtime } from '../src/runtime.ts';
import { runSnapshot } from '../src/services/snapshot.ts';

/**
 * Scheduled backup. A snapshot that does not fit in this invocation's remaining time saves its progress
 * and the next invocation continues it. A schedule's event is ignored; invoked, {"cluster":"primary"|"standby"}
 * picks the cluster (primary by default).
 */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'snapshot', pair: config.pair });
const credentials = lambdaCredentials(config);
let runtime: Runtime | undefined;
/** Time kept in hand to save progress and return. */
const MARGIN_MS = 10_000;

async function handle(event: unknown, context?: { getRemainingTimeInMillis?: () => number }) {
  const requested = (event as { cluster?: unknown } | null)?.cluster;
  if (requested !== undefined && requested !== 'primary' && requested !== 'standby') {
    throw new EventError(
      `malformed snapshot request at cluster: expected "primary" or "standby", got ${JSON.stringify(requested)}`,
    );
  }
  runtime ??= createRuntime(await credentials(), logger);
  const remaining = context?.getRemainingTimeInMillis?.();
  const result = await runSnapshot(snapshotDeps(runtime, requested ?? 'primary'), {
    ...(remaining !== undefined ? { deadline: Date.now() + remaining - MARGIN_MS } : {}),
  });
  if (result.status === 'complete') {
    const cutAt = Date.parse(result.manifest.cutAt);
    emitMetrics(
      'kdr',
      { Pair: config.pair },
      {
        SnapshotRecords: { value: result.manifest.records, unit: 'Count' },
        SnapshotAgeSeconds: { value: (Date.now() - cutAt) / 1000, unit: 'Seconds' },
      },
    );
    return {
      status: 'complete',
      snapshotId: result.manifest.snapshotId,
      records: result.manifest.records,
      segments: result.manifest.newSegments,
      gaps: result.manifest.gaps.length,
    };
  }
  // Still running: the age of the newest complete snapshot, so that a snapshot that never finishes raises
  // the snapshot-age alarm instead of going quiet.
  const cluster = requested === 'standby' ? config.standby.alias : config.primary.alias;
  const newest = (await runtime.snapshotCatalog.list(cluster))
    .map((e) => Date.parse(e.cutAt))
    .sort()
    .at(-1);
  if (newest !== undefined)
    emitMetrics(
      'kdr',
      { Pair: config.pair },
      { SnapshotAgeSeconds: { value: (Date.now() - newest) / 1000, unit: 'Seconds' } },
    );
  return result;
}

/** The Lambda entry point: the AWS calls it makes are attributed to the snapshot function's role. */
export const handler = inFunction('snapshot', handle);
