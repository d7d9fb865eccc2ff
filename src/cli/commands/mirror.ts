import type { Command } from 'commander';
import { InputError } from '../../errors.ts';
import { checkTopicsRegex, stopSignal, topicsOption, withRuntime } from '../context.ts';
import { type MirrorProgress, type MirrorSummary, runMirrorLoop } from '../mirrorLoop.ts';
import { runMirrorWorkers, type WorkersSummary, watchParent } from '../mirrorWorkers.ts';
import { emit, note, table } from '../output.ts';

/** More would only crowd a machine's cores and the group's rebalances. */
const MAX_WORKERS = 64;

export function parseWorkers(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_WORKERS)
    throw new InputError(
      `expected --workers as a whole number from 1 to ${MAX_WORKERS}, got ${JSON.stringify(value)}`,
    );
  return n;
}

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
    .option(
      '--workers <n>',
      `processes in the mirror's consumer group, started and stopped together (1 to ${MAX_WORKERS}): more than one core for many partitions`,
      '1',
    )
    .option('--json', 'print a JSON summary at the end')
    .action(
      async (options: { topics?: string; untilCaughtUp?: boolean; workers: string; json?: boolean }) => {
        checkTopicsRegex(options.topics);
        const workers = parseWorkers(options.workers);
        const { stopped } = stopSignal(note);
        watchParent();
        const json = Boolean(options.json);
        if (workers > 1) {
          const args = [
            ...(options.topics !== undefined ? ['--topics', options.topics] : []),
            ...(options.untilCaughtUp ? ['--until-caught-up'] : []),
          ];
          const summary = await runMirrorWorkers({ workers, args, stopped, note });
          printSummary(json, summary);
          if (summary.failed) {
            note(
              `kdr: mirror worker ${summary.failed.worker} (pid ${summary.failed.pid}) exited with code ${summary.failed.exitCode}; the others were stopped`,
            );
            process.exitCode = summary.failed.exitCode;
          }
          return;
        }
        // A worker of --workers leaves the status line to nobody: several would overwrite each other.
        const drawProgress = process.stderr.isTTY && !process.env.KDR_MIRROR_WORKER;
        const summary = await withRuntime({ KDR_TOPICS: options.topics }, (ctx) =>
          runMirrorLoop(ctx.runtime, {
            untilCaughtUp: Boolean(options.untilCaughtUp),
            topicsOption: topicsOption(options.topics),
            stopped,
            onProgress: (p) => {
              if (drawProgress) process.stderr.write(`\r\x1b[2K${progressLine(p)}`);
            },
          }),
        );
        if (drawProgress) process.stderr.write('\n');
        printSummary(json, summary);
      },
    );
}

function printSummary(json: boolean, summary: MirrorSummary | WorkersSummary): void {
  const by = 'workers' in summary ? ` by ${summary.workers.length} workers` : '';
  emit(json, summary, () =>
    [
      `mirrored ${summary.recordsMirrored} records in ${(summary.durationMs / 1000).toFixed(1)} s${by}`,
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
}
