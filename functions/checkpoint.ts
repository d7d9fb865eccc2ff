import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { emitMetrics } from '../src/metrics.ts';
import { checkpointDeps } from '../src/operations.ts';
import { createRuntime, type Runtime } from '../src/runtime.ts';
import { runCheckpoint } from '../src/services/checkpoint.ts';

/** Scheduled every minute: consumer-group checkpoints and an observation of the primary (for the RPO). */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'checkpoint', pair: config.pair });
let runtime: Runtime | undefined;

export async function handler() {
  runtime ??= createRuntime(config, logger);
  const result = await runCheckpoint(checkpointDeps(runtime), {
    commitOnStandby: config.checkpoint.commitOnStandby,
    mirrorGroups: [config.mirror.groupId],
  });
  const lag = result.observations.reduce(
    (n, o) => n + Math.max(0, o.endOffset - (o.lastMirrored === null ? 0 : o.lastMirrored + 1)),
    0,
  );
  emitMetrics(
    'kdr',
    { Pair: config.pair },
    {
      CheckpointedGroups: { value: result.groups, unit: 'Count' },
      ReplicationLagRecords: { value: lag, unit: 'Count' },
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
