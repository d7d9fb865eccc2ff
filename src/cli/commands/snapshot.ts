import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '../../core/snapshot.ts';
import { snapshotDeps } from '../../operations.ts';
import { listManifests, pruneSnapshots, runSnapshot, verifySnapshot } from '../../services/snapshot.ts';
import { checkTopicsRegex, requireSelection, topicsOption, withRuntime } from '../context.ts';
import { emit, note, table } from '../output.ts';

function parseCluster(value: string): 'primary' | 'standby' {
  if (value !== 'primary' && value !== 'standby')
    throw new InvalidArgumentError(`expected primary or standby, got ${JSON.stringify(value)}`);
  return value;
}

function parseKeep(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw new InvalidArgumentError(
      `expected a number of snapshots to keep, at least 1, got ${JSON.stringify(value)}`,
    );
  return Number(value);
}

function parseAge(value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

export function registerSnapshot(program: Command): void {
  program
    .command('snapshot')
    .description(
      'take a consistent, incremental snapshot of the selected topics (records, configs, group offsets) to the bucket',
    )
    .option(
      '--topics <regex>',
      'topics to snapshot, a regex matching the whole topic name (default KDR_TOPICS)',
    )
    .option('--cluster <cluster>', 'primary or standby', parseCluster, 'primary' as const)
    .option('--json', 'print the result as JSON')
    .action(async (options: { topics?: string; cluster: 'primary' | 'standby'; json?: boolean }) => {
      checkTopicsRegex(options.topics);
      const bar =
        process.stderr.isTTY && !options.json
          ? new cliProgress.SingleBar(
              {
                format: 'snapshot |{bar}| {value}/{total} partitions | {records} records | {mb} MB',
                hideCursor: true,
              },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
      const result = await withRuntime({ KDR_TOPICS: options.topics }, async ({ runtime }) => {
        const deps = snapshotDeps(runtime, options.cluster);
        // A snapshot of nothing would be written and reported as a success.
        await requireSelection({
          list: () => deps.admin.listTopics(),
          select: deps.selectTopic,
          regex: runtime.config.topics,
          option: topicsOption(options.topics),
          where: `on ${deps.cluster}`,
        });
        let started = false;
        deps.onProgress = (p) => {
          if (!bar) return;
          if (!started) bar.start(p.partitions, 0, { records: 0, mb: '0.0' });
          started = true;
          bar.update(p.partitionsDone, { records: p.records, mb: (p.bytes / 1e6).toFixed(1) });
        };
        try {
          return await runSnapshot(deps);
        } finally {
          bar?.stop();
        }
      });
      if (result.status !== 'complete') throw new Error('a snapshot without a time budget always completes');
      const m = result.manifest;
      const summary = {
        snapshotId: m.snapshotId,
        parent: m.parent,
        cluster: m.cluster,
        cutAt: m.cutAt,
        records: m.records,
        bytes: m.bytes,
        segments: m.newSegments,
        gaps: m.gaps,
        clamped: m.clamped,
        warnings: result.warnings,
      };
      emit(Boolean(options.json), summary, () =>
        [
          `snapshot ${m.snapshotId} of ${m.cluster}${m.parent ? ` (parent ${m.parent})` : ''}: ${m.records} records, ${(m.bytes / 1e6).toFixed(1)} MB in ${m.newSegments} new segments`,
          ...result.warnings.map((w) => `warning: ${w}`),
        ].join('\n'),
      );
    });

  const snapshots = program.command('snapshots').description('list and prune snapshots');
  snapshots
    .command('list')
    .description('every snapshot, oldest first')
    .option('--cluster <cluster>', 'only this cluster (primary or standby)', parseCluster)
    .option('--json', 'print as JSON')
    .action(async (options: { cluster?: 'primary' | 'standby'; json?: boolean }) => {
      const list = await withRuntime({}, async ({ runtime, config }) => {
        const alias = options.cluster ? config[options.cluster].alias : undefined;
        return (await listManifests(runtime.objectStore, alias, config.snapshot.prefix)).map((m) => ({
          snapshotId: m.snapshotId,
          cluster: m.cluster,
          parent: m.parent,
          cutAt: m.cutAt,
          records: m.records,
          bytes: m.bytes,
          segments: m.segments.length,
          topics: Object.keys(m.topics).length,
          gaps: m.gaps.length,
        }));
      });
      emit(Boolean(options.json), list, () =>
        list.length === 0
          ? 'no snapshots'
          : table([
              ['SNAPSHOT', 'CLUSTER', 'CUT AT', 'PARENT', 'RECORDS', 'SEGMENTS', 'GAPS'],
              ...list.map((s) => [
                s.snapshotId,
                s.cluster,
                s.cutAt,
                s.parent ?? '-',
                s.records,
                s.segments,
                s.gaps,
              ]),
            ]),
      );
    });
  snapshots
    .command('prune')
    .description('delete old snapshots, then every segment no remaining snapshot references')
    .option('--keep <n>', 'keep the newest N snapshots of each cluster', parseKeep)
    .option('--older-than <duration>', 'delete snapshots cut longer ago than this (7d, 12h, 30m)', parseAge)
    .option('--json', 'print what was deleted as JSON')
    .action(async (options: { keep?: number; olderThan?: number; json?: boolean }) => {
      const result = await withRuntime({}, ({ runtime }) =>
        pruneSnapshots(
          {
            objects: runtime.objectStore,
            catalog: runtime.snapshotCatalog,
            logger: runtime.logger,
            prefix: runtime.config.snapshot.prefix,
          },
          {
            ...(options.keep !== undefined ? { keep: options.keep } : {}),
            ...(options.olderThan !== undefined ? { olderThanMs: options.olderThan } : {}),
          },
        ),
      );
      emit(
        Boolean(options.json),
        result,
        () =>
          `removed ${result.removedSnapshots.length} snapshots (${result.removedSnapshots.join(', ') || 'none'}) and ${result.deletedSegments} unreferenced segments; ${result.keptSnapshots} kept`,
      );
    });

  program
    .command('verify')
    .description(
      'check that every segment of a snapshot exists and matches its checksum (exit 1 naming each bad one)',
    )
    .requiredOption('--snapshot <id>', 'the snapshot id')
    .option('--deep', 'also compare the records with what is still on the cluster')
    .option('--cluster <cluster>', 'the cluster to compare with for --deep', parseCluster, 'primary' as const)
    .option('--json', 'print as JSON')
    .action(
      async (options: {
        snapshot: string;
        deep?: boolean;
        cluster: 'primary' | 'standby';
        json?: boolean;
      }) => {
        const result = await withRuntime({}, async ({ runtime }) => {
          const deps = snapshotDeps(runtime, options.cluster);
          return verifySnapshot(
            { objects: deps.objects, reader: deps.reader, prefix: deps.prefix },
            options.snapshot,
            { deep: Boolean(options.deep) },
          );
        });
        const problems = result.bad.length + (result.deep?.differing.length ?? 0);
        emit(Boolean(options.json), result, () =>
          [
            `snapshot ${result.snapshotId}: ${result.segments} segments, ${result.records} records`,
            ...result.bad.map((b) => `BAD ${b.key}: ${b.problem}`),
            ...(result.deep
              ? [
                  `compared ${result.deep.compared} records with the cluster (${result.deep.missingFromCluster} no longer there)`,
                  ...result.deep.differing.map((d) => `DIFFERS ${d.topic}-${d.partition}@${d.offset}`),
                ]
              : []),
            problems === 0 ? 'ok' : `${problems} problem(s)`,
          ].join('\n'),
        );
        if (problems > 0) {
          note(
            `kdr: snapshot ${result.snapshotId} failed verification: ${result.bad.map((b) => b.key).join(', ')}`,
          );
          process.exitCode = 1;
        }
      },
    );
}
