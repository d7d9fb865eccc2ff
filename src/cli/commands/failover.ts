import { type Command, InvalidArgumentError, Option } from 'commander';
import { failoverRequestSchema, parseRequest } from '../../events/operations.ts';
import { failoverDeps } from '../../operations.ts';
import { describeGap } from '../../services/checkpoint.ts';
import { type AbortReport, abortFailover, type FailoverReport, failover } from '../../services/failover.ts';
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
    `operation ${report.operationId}; RTO ${report.rtoMs} ms; ${report.rpo.statement || `RPO ${report.rpo.records} records, ${report.rpo.seconds.toFixed(1)} s`}`,
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
        `${m.standbyOffset}${m.exact ? '' : ' (after last mirrored)'}`,
      ]);
  }
  if (rows.length > 1) lines.push(table(rows));
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

export function formatAbort(kind: string, report: AbortReport): string {
  return [
    `${kind} ${report.operationId} aborted in phase ${report.phase}: pair ${report.pair} is ${report.state} (epoch ${report.epoch})`,
    ...report.notes.map((n) => `note: ${n}`),
  ].join('\n');
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
    .addOption(
      new Option(
        '--abort',
        'return a failover in progress (killed, or still running elsewhere) to MIRRORING, while the standby is not yet active',
      ).conflicts(['planned', 'unplanned']),
    )
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      '\nA failover whose process died (Ctrl-C, kill, a Lambda timeout) is resumed by running the same command\n' +
        'again: from the phase it was in, once its lease expired (at once if its process on this host is gone).\n' +
        '`kdr status` shows the operation, its phase, owner and lease. `--unplanned` carries on a planned\n' +
        'failover whose primary died, until it moved groups.',
    )
    .action(
      async (options: {
        planned?: boolean;
        unplanned?: boolean;
        abort?: boolean;
        timeout: number;
        json?: boolean;
      }) => {
        const json = Boolean(options.json);
        const result = await withRuntime<{ abort: AbortReport } | { report: FailoverReport }>(
          {},
          ({ runtime, config }) => {
            const request = parseRequest(
              failoverRequestSchema,
              {
                ...(options.unplanned ? { mode: 'unplanned' } : options.planned ? { mode: 'planned' } : {}),
                timeoutSeconds: options.timeout,
                abort: Boolean(options.abort),
              },
              config.pair,
              'failover',
            );
            const deps = failoverDeps(runtime);
            if (request.abort) return abortFailover(deps).then((r) => ({ abort: r }));
            return failover(deps, {
              ...(request.mode ? { mode: request.mode } : {}),
              timeoutMs: request.timeoutSeconds * 1000,
            }).then((r) => ({ report: r }));
          },
        );
        if ('abort' in result) emit(json, result.abort, () => formatAbort('failover', result.abort));
        else emit(json, result.report, () => formatFailover(result.report));
      },
    );
}
