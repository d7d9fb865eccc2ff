import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { Option } from 'commander';
import type { KdrConfig } from '../../config.ts';
import { parseRetentionMs, RESTAMP_HEADER, snapshotAt } from '../../core/restore.ts';
import { topicSelector } from '../../core/topicSync.ts';
import { InputError } from '../../errors.ts';
import { parseRequest } from '../../events/operations.ts';
import { restoreRequestSchema } from '../../events/restoreRequest.ts';
import { restoreDeps, restoreServiceRequest } from '../../operations.ts';
import { type RestoreDeps, type RestoreReport, runRestore } from '../../services/restore.ts';
import { listManifests, loadManifest } from '../../services/snapshot.ts';
import { checkTopicsRegex, cliConfig, requireSelection } from '../context.ts';
import { emit, note, table } from '../output.ts';

function pastRetentionCell(p: RestoreReport['topics'][number]['pastRetention']): string {
  if (!p) return '-';
  if (p.retentionMs === null) return `0 (no time retention: ${p.retentionFrom})`;
  return `${p.records} (retention.ms=${p.retentionMs}, ${p.retentionFrom})`;
}

export function formatRestore(report: RestoreReport): string {
  const lines = [
    `${report.dryRun ? 'would restore' : 'restored'} snapshot ${report.snapshotId} of ${report.snapshotCluster} (cut ${report.cutAt}) into ${report.target} (--mode ${report.mode}): ${report.records} records, ${(report.bytes / 1e6).toFixed(1)} MB`,
  ];
  if (report.safetySnapshotId)
    lines.push(`safety snapshot of the replaced topics: ${report.safetySnapshotId}`);
  lines.push(
    table([
      ['SNAPSHOT TOPIC', 'TARGET TOPIC', 'ACTION', 'PARTITIONS', 'RECORDS', 'PAST RETENTION'],
      ...report.topics.map((t) => [
        t.source,
        t.target,
        t.action,
        `${t.partitions}${t.repartitioned ? ' (re-partitioned)' : ''}`,
        t.records,
        pastRetentionCell(t.pastRetention),
      ]),
    ]),
  );
  const groups = Object.entries(report.groups);
  if (groups.length > 0) {
    const rows: (string | number)[][] = [['GROUP', 'STATUS', 'TOPIC', 'PARTITION', 'OFFSET']];
    for (const [group, g] of groups) {
      if (g.status === 'planned') {
        for (const [topic, positions] of Object.entries(g.positions))
          for (const [partition, offset] of Object.entries(positions))
            rows.push([group, 'planned (snapshot offset)', topic, partition, offset]);
      } else {
        for (const o of g.offsets) rows.push([group, g.status, o.topic, o.partition, o.offset]);
      }
    }
    lines.push(table(rows));
  }
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

const collect = (value: string, previous: string[]) => [...previous, value];

/**
 * The snapshot a restore would read and its topics, when the request names one plainly (by id, or by a
 * well-formed --at that finds one); undefined otherwise, and the restore itself reports what is wrong.
 */
async function snapshotTopics(
  deps: RestoreDeps,
  config: KdrConfig,
  request: { snapshotId?: string; at?: string; from: 'primary' | 'standby' },
): Promise<{ snapshotId: string; topics: string[] } | undefined> {
  let manifest: { snapshotId: string; topics: Record<string, unknown> } | undefined;
  if (request.snapshotId !== undefined && request.at === undefined) {
    manifest = await loadManifest(deps.objects, request.snapshotId, deps.snapshotPrefix);
  } else if (request.at !== undefined && request.snapshotId === undefined) {
    const at = Date.parse(request.at);
    if (Number.isNaN(at)) return undefined;
    manifest = snapshotAt(
      await listManifests(deps.objects, config[request.from].alias, deps.snapshotPrefix),
      at,
    );
  }
  return manifest && { snapshotId: manifest.snapshotId, topics: Object.keys(manifest.topics) };
}

export function registerRestore(program: Command): void {
  program
    .command('restore')
    .description(
      'restore topics and consumer-group positions from a snapshot (resumable: run the same command again to continue)',
    )
    .option('--snapshot <id>', 'the snapshot to restore')
    .option('--at <iso-time>', 'restore the newest snapshot cut at or before this time instead')
    .addOption(
      new Option('--from <cluster>', 'with --at: whose snapshots to consider')
        .choices(['primary', 'standby'])
        .default('primary'),
    )
    .option(
      '--target <cluster>',
      'primary, standby, or host:port[,host:port...] of another cluster',
      'primary',
    )
    .option(
      '--topics <regex>',
      'snapshot topics to restore, a regex matching the whole topic name (default: all)',
    )
    .option('--rename <from:to>', 'restore snapshot topic FROM as TO (repeatable)', collect, [])
    .option('--topic-prefix <prefix>', 'prepend this to every target topic name not renamed')
    .addOption(
      new Option(
        '--mode <mode>',
        'new: only into missing or empty topics; append: after existing data; replace: delete and recreate',
      )
        .choices(['new', 'append', 'replace'])
        .default('new'),
    )
    .option('--yes', 'confirm --mode replace')
    .option('--no-safety-snapshot', 'with --mode replace: do not snapshot the topics before deleting them')
    .option(
      '--retention-ms <ms>',
      "retention.ms of the restored topics (-1: no limit), set on those it creates and those it writes into; without it they keep the snapshot's (or the existing topic's, or the broker's 7-day default), and a restore of records already older than that refuses to start",
    )
    .option(
      '--restamp',
      `write the records with the restore's time as timestamp, each keeping its original timestamp (ms since the epoch) in header ${RESTAMP_HEADER}: records older than the retention are then kept`,
    )
    .option(
      '--dry-run',
      'print what would be created, written and committed, and how many records are past retention, and change nothing',
    )
    .option('--json', 'print the report as JSON')
    .action(
      async (options: {
        snapshot?: string;
        at?: string;
        from: string;
        target: string;
        topics?: string;
        rename: string[];
        topicPrefix?: string;
        mode: string;
        yes?: boolean;
        safetySnapshot: boolean;
        retentionMs?: string;
        restamp?: boolean;
        dryRun?: boolean;
        json?: boolean;
      }) => {
        checkTopicsRegex(options.topics);
        let retentionMs: number | undefined;
        try {
          if (options.retentionMs !== undefined) retentionMs = parseRetentionMs(options.retentionMs);
        } catch (error) {
          throw new InputError((error as Error).message);
        }
        const { config, logger } = await cliConfig();
        const request = parseRequest(
          restoreRequestSchema,
          {
            ...(options.snapshot !== undefined ? { snapshotId: options.snapshot } : {}),
            ...(options.at !== undefined ? { at: options.at } : {}),
            from: options.from,
            target: options.target,
            ...(options.topics !== undefined ? { topics: options.topics } : {}),
            rename: options.rename,
            ...(options.topicPrefix !== undefined ? { topicPrefix: options.topicPrefix } : {}),
            mode: options.mode,
            yes: Boolean(options.yes),
            safetySnapshot: options.safetySnapshot,
            ...(retentionMs !== undefined ? { retentionMs } : {}),
            restamp: Boolean(options.restamp),
            dryRun: Boolean(options.dryRun),
          },
          config.pair,
          'restore',
        );
        const { deps, close } = restoreDeps(config, logger, request.target);
        const bar =
          process.stderr.isTTY && !options.json
            ? new cliProgress.SingleBar(
                {
                  format:
                    '{phase} |{bar}| {percentage}% | {value}/{total} {unit} | {rate}/s | ETA {eta_formatted}',
                  hideCursor: true,
                  etaBuffer: 50,
                },
                cliProgress.Presets.shades_classic,
              )
            : undefined;
        let barPhase: string | undefined;
        let phaseStarted = Date.now();
        deps.onProgress = (p) => {
          if (!bar) return;
          if (barPhase !== p.phase) {
            if (barPhase) bar.stop();
            barPhase = p.phase;
            phaseStarted = Date.now();
            bar.start(p.total, 0, {
              phase: p.phase,
              unit: p.phase === 'verify' ? 'segments' : 'records',
              rate: 0,
            });
          }
          const rate = Math.round((p.done * 1000) / Math.max(1, Date.now() - phaseStarted));
          bar.update(p.done, { rate });
        };
        let result: Awaited<ReturnType<typeof runRestore>>;
        try {
          // A --topics that selects nothing in the snapshot: say what the snapshot has, before anything
          // is written (renamed topics are restored whatever --topics says).
          const regex = request.topics;
          const chosen =
            regex !== undefined && request.rename.length === 0
              ? await snapshotTopics(deps, config, request)
              : undefined;
          if (regex !== undefined && chosen)
            await requireSelection({
              list: async () => chosen.topics,
              select: topicSelector(regex),
              regex,
              option: '--topics',
              where: `in snapshot ${chosen.snapshotId}`,
            });
          result = await runRestore(deps, restoreServiceRequest(config, request));
        } finally {
          bar?.stop();
          await close();
        }
        if (result.status !== 'complete') throw new Error('a restore without a deadline always completes');
        const report = result.report;
        emit(Boolean(options.json), report, () => formatRestore(report));
        const skipped = Object.entries(report.groups).filter(([, g]) => g.status === 'skipped');
        if (skipped.length > 0) {
          note(`kdr: ${skipped.length} group(s) were not restored: ${skipped.map(([g]) => g).join(', ')}`);
          process.exitCode = 5;
        }
      },
    );
}
