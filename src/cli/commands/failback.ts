import type { Command } from 'commander';
import { failbackRequestSchema, parseRequest } from '../../events/operations.ts';
import { failbackDeps } from '../../operations.ts';
import { describeGap } from '../../services/checkpoint.ts';
import { type FailbackReport, failback } from '../../services/failback.ts';
import { withRuntime } from '../context.ts';
import { emit, table } from '../output.ts';
import { positiveSeconds } from './failover.ts';

export function formatFailback(report: FailbackReport): string {
  const lines = [
    `pair ${report.pair} failed back ${report.from} -> ${report.to}, epoch ${report.epoch}, in ${report.durationMs} ms`,
    `mirrored back ${report.mirroredBack} records; exported ${report.exported.records} records the standby never got${report.exported.location ? ` to ${report.exported.location}` : ''}`,
    ...report.exported.gaps.map((g) => `export gap: ${describeGap(g, report.to)}`),
    ...report.mirroredBackGaps.map((g) => `mirror-back gap: ${describeGap(g, report.from)}`),
  ];
  const rows: (string | number)[][] = [['GROUP', 'TOPIC', 'PARTITION', 'STANDBY OFFSET', 'PRIMARY OFFSET']];
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

export function registerFailback(program: Command): void {
  program
    .command('failback')
    .description(
      'make the old primary active again: export what it had that the standby never got, mirror the standby back, move groups back',
    )
    .option(
      '--timeout <seconds>',
      'how long to wait for the standby to be mirrored back before aborting',
      positiveSeconds,
      120,
    )
    .option('--json', 'print the report as JSON')
    .action(async (options: { timeout: number; json?: boolean }) => {
      const report = await withRuntime({}, async ({ runtime, config }) => {
        const request = parseRequest(
          failbackRequestSchema,
          { timeoutSeconds: options.timeout },
          config.pair,
          'failback',
        );
        const { deps, close } = failbackDeps(runtime);
        try {
          return await failback(deps, { timeoutMs: request.timeoutSeconds * 1000 });
        } finally {
          await close();
        }
      });
      emit(Boolean(options.json), report, () => formatFailback(report));
    });
}
