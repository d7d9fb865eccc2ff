import { type Command, Option } from 'commander';
import { failbackRequestSchema, parseRequest } from '../../events/operations.ts';
import { failbackDeps } from '../../operations.ts';
import { describeGap } from '../../services/checkpoint.ts';
import { abortFailback, type FailbackReport, failback } from '../../services/failback.ts';
import type { AbortReport } from '../../services/failover.ts';
import { withRuntime } from '../context.ts';
import { emit, table } from '../output.ts';
import { formatAbort, positiveSeconds } from './failover.ts';

export function formatFailback(report: FailbackReport): string {
  const lines = [
    `pair ${report.pair} failed back ${report.from} -> ${report.to}, epoch ${report.epoch}, in ${report.durationMs} ms (operation ${report.operationId})`,
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
  if (report.unread.length > 0) {
    const unread: (string | number)[][] = [
      ['GROUP', 'TOPIC', 'PARTITION', 'UNREAD PRIMARY OFFSETS', 'PLACED AT'],
    ];
    for (const u of report.unread)
      unread.push([u.group, u.topic, u.partition, `${u.from}..${u.to} (${u.records})`, u.placedAt]);
    lines.push(table(unread));
  }
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
    .option(
      '--read-outage',
      'place moved groups before the exported outage records, so they read them (and re-read what follows them)',
    )
    .addOption(
      new Option(
        '--abort',
        'return a failback in progress (killed, or still running elsewhere) to FAILED_OVER, while the primary is not yet active',
      ).conflicts(['readOutage']),
    )
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      '\nA failback whose process died is resumed by running the same command again, from the phase it was in.\n' +
        'Groups moved back are placed after the outage records (on the old primary, never on the standby) unless\n' +
        '--read-outage; the report names, per group and partition, the primary offsets each will not read.',
    )
    .action(async (options: { timeout: number; readOutage?: boolean; abort?: boolean; json?: boolean }) => {
      const json = Boolean(options.json);
      const result = await withRuntime<{ abort: AbortReport } | { report: FailbackReport }>(
        {},
        async ({ runtime, config }) => {
          const request = parseRequest(
            failbackRequestSchema,
            {
              timeoutSeconds: options.timeout,
              readOutage: Boolean(options.readOutage),
              abort: Boolean(options.abort),
            },
            config.pair,
            'failback',
          );
          const { deps, close } = failbackDeps(runtime);
          try {
            if (request.abort) return { abort: await abortFailback(deps) };
            return {
              report: await failback(deps, {
                timeoutMs: request.timeoutSeconds * 1000,
                readOutage: request.readOutage,
              }),
            };
          } finally {
            await close();
          }
        },
      );
      if ('abort' in result) emit(json, result.abort, () => formatAbort('failback', result.abort));
      else emit(json, result.report, () => formatFailback(result.report));
    });
}
