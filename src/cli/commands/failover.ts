import { type Command, InvalidArgumentError, Option } from 'commander';
import { failoverRequestSchema, parseRequest } from '../../events/operations.ts';
import { failoverDeps } from '../../operations.ts';
import { describeGap } from '../../services/checkpoint.ts';
import { type FailoverReport, failover } from '../../services/failover.ts';
import { withRuntime } from '../context.ts';
import { emit, table } from '../output.ts';

export function positiveSeconds(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(n > 0) || n > 3600) {
    throw new InvalidArgumentError(
      `expected seconds, more than 0 and at most 3600, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

export function formatFailover(report: FailoverReport): string {
  const lines = [
    `pair ${report.pair} failed over ${report.from} -> ${report.to} (${report.mode}), epoch ${report.epoch}`,
    `RTO ${report.rtoMs} ms; RPO ${report.rpo.records} records, ${report.rpo.seconds.toFixed(1)} s`,
    ...report.rpo.gaps.map((g) => `gap: ${describeGap(g, report.from)}`),
  ];
  const rows: (string | number)[][] = [['GROUP', 'TOPIC', 'PARTITION', 'SOURCE OFFSET', 'STANDBY OFFSET']];
  for (const [group, moves] of Object.entries(report.groups)) {
    for (const m of moves)
      rows.push([
        group,
        m.topic,
        m.partition,
        m.sourceOffset,
        `${m.standbyOffset}${m.exact ? '' : ' (end)'}`,
      ]);
  }
  if (rows.length > 1) lines.push(table(rows));
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

export function registerFailover(program: Command): void {
  program
    .command('failover')
    .description(
      'promote the standby: move every consumer group exactly, stop and fence the mirror, flip the active cluster',
    )
    .addOption(
      new Option('--planned', 'the primary is up: drain the mirror to zero lag first (default)').conflicts(
        'unplanned',
      ),
    )
    .addOption(
      new Option('--unplanned', 'the primary is gone: use the latest checkpoints and report the RPO'),
    )
    .option(
      '--timeout <seconds>',
      'how long a planned failover waits for zero lag before aborting',
      positiveSeconds,
      60,
    )
    .option('--json', 'print the report as JSON')
    .action(async (options: { planned?: boolean; unplanned?: boolean; timeout: number; json?: boolean }) => {
      const report = await withRuntime({}, ({ runtime, config }) => {
        const request = parseRequest(
          failoverRequestSchema,
          { mode: options.unplanned ? 'unplanned' : 'planned', timeoutSeconds: options.timeout },
          config.pair,
          'failover',
        );
        return failover(failoverDeps(runtime), {
          mode: request.mode,
          timeoutMs: request.timeoutSeconds * 1000,
        });
      });
      emit(Boolean(options.json), report, () => formatFailover(report));
    });
}
