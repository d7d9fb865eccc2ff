import type { Command } from 'commander';
import { checkpointDeps } from '../../operations.ts';
import { mirroredTopics } from '../../services/checkpoint.ts';
import { partitionLag } from '../../services/lag.ts';
import { withRuntime } from '../context.ts';
import { emit, table } from '../output.ts';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      'the pair: active cluster, state, epoch, per-partition lag, and the age of the newest checkpoint',
    )
    .option('--json', 'print as JSON')
    .action(async (options: { json?: boolean }) => {
      const status = await withRuntime({}, async ({ runtime, config }) => {
        const [control, history, checkpoints] = await Promise.all([
          runtime.stateStore.getControl(),
          runtime.stateStore.history(10),
          runtime.stateStore.getCheckpoints(),
        ]);
        // The primary may be down (after an unplanned failover): lag is then unknown, not an error.
        const lag = await mirroredTopics(checkpointDeps(runtime))
          .then((topics) =>
            partitionLag(runtime, topics).then((partitions) => ({ topics, partitions, error: null })),
          )
          .catch((error: Error) => ({ topics: [] as string[], partitions: [], error: error.message }));
        const now = Date.now();
        return {
          pair: config.pair,
          primary: config.primary.alias,
          standby: config.standby.alias,
          control: {
            state: control.state,
            activeCluster: control.activeCluster,
            epoch: control.epoch,
            updatedAt: control.updatedAt || null,
          },
          history,
          checkpoint: {
            at: checkpoints.at,
            ageSeconds: checkpoints.at === null ? null : (now - checkpoints.at) / 1000,
            groups: new Set(checkpoints.groups.map((g) => g.group)).size,
          },
          topics: lag.topics,
          totalLagOffsets: lag.partitions.reduce((n, p) => n + p.lagOffsets, 0),
          partitions: lag.partitions,
          ...(lag.error ? { lagError: lag.error } : {}),
        };
      });
      emit(Boolean(options.json), status, () =>
        [
          `pair ${status.pair}: ${status.control.state}, ${status.control.activeCluster} active, epoch ${status.control.epoch}`,
          `newest checkpoint: ${status.checkpoint.ageSeconds === null ? 'never' : `${status.checkpoint.ageSeconds.toFixed(0)} s ago (${status.checkpoint.groups} groups)`}`,
          status.lagError
            ? `lag unknown: ${status.lagError}`
            : `${status.topics.length} topics, lag ${status.totalLagOffsets} offsets`,
          table([
            ['TOPIC', 'PARTITION', 'SOURCE END', 'LAST MIRRORED', 'LAG', 'LAST RECORD AGE (s)'],
            ...status.partitions.map((p) => [
              p.topic,
              p.partition,
              p.sourceEnd,
              p.lastMirrored ?? '-',
              p.lagOffsets,
              p.lastMirroredAgeSeconds === null ? '-' : p.lastMirroredAgeSeconds.toFixed(1),
            ]),
          ]),
        ].join('\n'),
      );
    });
}
