import type { Command } from 'commander';
import { checkTopicsRegex, stopSignal, topicsOption, withRuntime } from '../context.ts';
import { type MirrorProgress, runMirrorLoop } from '../mirrorLoop.ts';
import { emit, note, table } from '../output.ts';

export function progressLine(p: MirrorProgress): string {
  const parts = [
    `mirrored ${p.recordsMirrored} records`,
    `${Math.round(p.recordsPerSecond)} rec/s`,
    `lag ${p.lagOffsets ?? '?'} offsets`,
    `${p.topics} topics`,
  ];
  if (p.partitionsPending !== null) parts.push(`${p.partitionsPending} partitions to catch up`);
  if (p.failingPartitions > 0) parts.push(`${p.failingPartitions} partitions FAILING (see log)`);
  return parts.join(' | ');
}

export function registerMirror(program: Command): void {
  program
    .command('mirror')
    .description('mirror the selected topics from primary to standby, exactly once, in a consumer group')
    .option(
      '--topics <regex>',
      'topics to mirror, a regex matching the whole topic name (default KDR_TOPICS, or all non-internal topics)',
    )
    .option(
      '--until-caught-up',
      'exit once the standby has every record the source had when the command started',
    )
    .option('--json', 'print a JSON summary at the end')
    .action(async (options: { topics?: string; untilCaughtUp?: boolean; json?: boolean }) => {
      checkTopicsRegex(options.topics);
      const { stopped } = stopSignal(note);
      const summary = await withRuntime({ KDR_TOPICS: options.topics }, (ctx) =>
        runMirrorLoop(ctx.runtime, {
          untilCaughtUp: Boolean(options.untilCaughtUp),
          topicsOption: topicsOption(options.topics),
          stopped,
          onProgress: (p) => {
            if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${progressLine(p)}`);
          },
        }),
      );
      if (process.stderr.isTTY) process.stderr.write('\n');
      emit(Boolean(options.json), summary, () =>
        [
          `mirrored ${summary.recordsMirrored} records in ${(summary.durationMs / 1000).toFixed(1)} s`,
          table([
            ['TOPIC', 'PARTITION', 'SOURCE END', 'LAST MIRRORED', 'LAG'],
            ...summary.partitions.map((p) => [
              p.topic,
              p.partition,
              p.sourceEnd,
              p.lastMirrored ?? '-',
              p.lagOffsets,
            ]),
          ]),
        ].join('\n'),
      );
    });
}
