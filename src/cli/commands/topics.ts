import type { Command } from 'commander';
import { withRuntime } from '../context.ts';
import { emit } from '../output.ts';

export function registerTopics(program: Command): void {
  const topics = program.command('topics').description('standby topics');
  topics
    .command('sync')
    .description('create, grow and re-configure the standby topics of the selection (never deletes)')
    .option('--topics <regex>', 'topics to sync (default KDR_TOPICS)')
    .option('--json', 'print what was done as JSON')
    .action(async (options: { topics?: string; json?: boolean }) => {
      const result = await withRuntime({ KDR_TOPICS: options.topics }, ({ runtime }) =>
        runtime.topicSync.sync(),
      );
      emit(Boolean(options.json), result, () =>
        [
          `${result.selected.length} topics selected`,
          ...result.create.map((c) => `created ${c.topic} (${c.partitions} partitions)`),
          ...result.addPartitions.map((a) => `grew ${a.topic} from ${a.from} to ${a.to} partitions`),
          ...result.alterConfigs.map((a) => `changed ${a.topic}: ${a.changed.join(', ')}`),
          ...result.warnings.map((w) => `warning: ${w}`),
        ].join('\n'),
      );
    });
}
