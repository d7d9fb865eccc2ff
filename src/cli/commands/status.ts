import type { Command } from 'commander';
import { partitionLag } from '../../services/lag.ts';
import { withRuntime } from '../context.ts';
import { emit, table } from '../output.ts';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('replication status of the pair: per-partition lag and the age of the last mirrored record')
    .option('--json', 'print as JSON')
    .action(async (options: { json?: boolean }) => {
      const status = await withRuntime({}, async ({ runtime, config }) => {
        const topics = (await runtime.sourceAdmin.describeTopics())
          .map((t) => t.name)
          .filter(runtime.selectTopic);
        const selected = topics.filter((t) => !t.startsWith('__')).sort();
        const partitions = await partitionLag(runtime, selected);
        return {
          pair: config.pair,
          source: config.primary.alias,
          target: config.standby.alias,
          topics: selected,
          totalLagOffsets: partitions.reduce((n, p) => n + p.lagOffsets, 0),
          partitions,
        };
      });
      emit(Boolean(options.json), status, () =>
        [
          `pair ${status.pair}: ${status.source} -> ${status.target}, ${status.topics.length} topics, lag ${status.totalLagOffsets} offsets`,
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
