import type { Command } from 'commander';
import { checkpointDeps } from '../../operations.ts';
import { describeGap, runCheckpoint } from '../../services/checkpoint.ts';
import { withRuntime } from '../context.ts';
import { emit } from '../output.ts';

export function registerCheckpoint(program: Command): void {
  program
    .command('checkpoint')
    .description("store every consumer group's committed offsets on the primary, translated to the standby")
    .option(
      '--commit-on-standby',
      'also commit them on the standby for groups that are empty there (default KDR_CHECKPOINT_COMMIT_ON_STANDBY)',
    )
    .option('--json', 'print the checkpoint as JSON')
    .action(async (options: { commitOnStandby?: boolean; json?: boolean }) => {
      const result = await withRuntime({}, ({ runtime, config }) =>
        runCheckpoint(
          { ...checkpointDeps(runtime), counterpartMap: runtime.counterpartMap },
          {
            commitOnStandby: options.commitOnStandby ?? config.checkpoint.commitOnStandby,
            mirrorGroups: [config.mirror.groupId],
          },
        ),
      );
      // Skipped (the pair is not MIRRORING) is not an error: exit 0, say why.
      emit(Boolean(options.json), result, () =>
        result.skipped
          ? `checkpoint skipped: ${result.skipped}`
          : [
              `checkpointed ${result.checkpoints.length} offsets of ${result.groups} groups at ${new Date(result.at).toISOString()}`,
              ...(result.committedOnStandby.length
                ? [`committed on the standby: ${result.committedOnStandby.join(', ')}`]
                : []),
              ...result.gaps.map((g) => `gap: ${describeGap(g, 'the primary')}`),
              ...result.warnings.map((w) => `warning: ${w}`),
            ].join('\n'),
      );
    });
}
