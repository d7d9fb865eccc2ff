import { inFunction } from '../src/adapters/aws/callLog.ts';
import { loadConfig } from '../src/config.ts';
import { lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { emitMetrics } from '../src/metrics.ts';
import { checkpointDeps } from '../src/operations.ts';
import { createRuntime, type Runtime } from '../src/runtime.ts';
import { runCheckpoint, unmirroredOffsets } from '../src/services/checkpoint.ts';

/** Scheduled every minute: consumer-group checkpoints and an observation of the primary (for the RPO). */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'checkpoint', pair: config.pair });
const credentials = lambdaCredentials(config);
let runtime: Runtime | undefined;

async function handle() {
  runtime ??= createRuntime(await credentials(), logger);
  const result = await runCheckpoint(
    { ...checkpointDeps(runtime), counterpartMap: runtime.counterpartMap },
    { commitOnStandby: config.checkpoint.commitOnStandby, mirrorGroups: [config.mirror.groupId] },
  );
  // The schedule keeps firing during and after a failover: a skipped checkpoint is not a failure, and the
  // forward lag means nothing then (no metrics).
  if (result.skipped) return { at: result.at, skipped: result.skipped };
  const lag = result.observations.reduce((n, o) => n + unmirroredOffsets(o), 0);
  // Seconds: the age of the oldest record not yet mirrored (0 when everything is), the RPO right now.
  const lagSeconds = result.observations.reduce(
    (n, o) =>
      o.firstUnmirroredTimestamp === null
        ? n
        : Math.max(n, (o.observedAt - o.firstUnmirroredTimestamp) / 1000),
    0,
  );
  emitMetrics(
    'kdr',
    { Pair: config.pair },
    {
      CheckpointedGroups: { value: result.groups, unit: 'Count' },
      ReplicationLagRecords: { value: lag, unit: 'Count' },
      ReplicationLagSeconds: { value: Math.max(0, lagSeconds), unit: 'Seconds' },
    },
  );
  return {
    at: result.at,
    groups: result.groups,
    offsets: result.checkpoints.length,
    partitions: result.observations.length,
    warnings: result.warnings,
  };
}

/** The Lambda entry point: the AWS calls it makes are attributed to the checkpoint function's role. */
export const handler = inFunction('checkpoint', handle);
