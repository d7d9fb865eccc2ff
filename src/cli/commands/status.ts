import type { Command } from 'commander';
import { pairStatus } from '../../services/status.ts';
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
      const status = await withRuntime({}, ({ runtime }) => pairStatus(runtime));
      emit(Boolean(options.json), status, () =>
        [
          `pair ${status.pair}: ${status.control.state}, ${status.control.activeCluster} active, epoch ${status.control.epoch}`,
          ...(status.operation
            ? [
                `operation ${status.operation.id}: ${status.operation.kind}${status.operation.mode ? ` ${status.operation.mode}` : ''}, phase ${status.operation.phase}, ${status.operation.outcome}` +
                  (status.operation.outcome === 'in-progress'
                    ? status.operation.leaseExpired
                      ? ` (no live owner: run \`kdr ${status.operation.kind}\` to resume it, or --abort)`
                      : ` (owner ${status.operation.owner}, lease until ${status.operation.leaseUntil})`
                    : ''),
              ]
            : []),
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
