import { setTimeout as sleep } from 'node:timers/promises';
import { GroupMirror } from '../adapters/kafka/groupMirror.ts';
import { emptySelectionMessage } from '../core/topicSync.ts';
import { isKdrError, type KdrError } from '../errors.ts';
import { checkpointDeps, snapshotDeps } from '../operations.ts';
import type { Runtime } from '../runtime.ts';
import { runCheckpoint } from '../services/checkpoint.ts';
import { caughtUp, type PartitionLag, partitionLag, waitVisible } from '../services/lag.ts';
import { runSnapshot } from '../services/snapshot.ts';
import { emptySelectionError } from './context.ts';

/**
 * The mirror as a long-running process: topic sync, a consumer group feeding the engine, periodic
 * re-sync (new topics, more partitions restart the consumer with the new selection), a status line, and
 * optionally an end once the standby has everything the source had at start.
 */

/** How often `--until-caught-up` names the partitions it still waits for. */
const PENDING_REPORT_MS = 15_000;

export interface MirrorLoopOptions {
  untilCaughtUp: boolean;
  stopped: Promise<unknown>;
  /** Called about once a second with the running totals (status line). */
  onProgress?: (progress: MirrorProgress) => void;
  resyncMs?: number;
  /** Also take consumer-group checkpoints on this schedule (`kdr run`). */
  checkpointEveryMs?: number;
  /** Also take snapshots of the primary on this schedule (`kdr run`). */
  snapshotEveryMs?: number;
  /** How the operator gave the topic regex (`--topics`; KDR_TOPICS by default), for messages. */
  topicsOption?: string;
}

export interface MirrorProgress {
  recordsMirrored: number;
  recordsPerSecond: number;
  lagOffsets: number | null;
  partitionsPending: number | null;
  failingPartitions: number;
  topics: number;
}

export interface MirrorSummary {
  recordsMirrored: number;
  durationMs: number;
  topics: string[];
  partitions: PartitionLag[];
}

export async function runMirrorLoop(rt: Runtime, options: MirrorLoopOptions): Promise<MirrorSummary> {
  const started = Date.now();
  const { logger, config } = rt;
  let fatal: KdrError | undefined;
  let recordsMirrored = 0;
  const failing = new Set<string>();
  const highWatermarks = new Map<string, { hw: number; lastMirrored: number | null }>();

  const route = { sourceAlias: rt.source.alias, targetAlias: rt.target.alias };
  let sync = await rt.topicSync.sync();
  const selection = {
    regex: config.topics,
    option: options.topicsOption ?? 'KDR_TOPICS',
    where: `on ${rt.source.alias}`,
  };
  // Until caught up with nothing selected would report success having mirrored nothing: an input error
  // (thrown before the consumer starts; the sync created nothing). A long-running mirror waits for
  // topics to appear, and says once why it mirrors nothing.
  if (sync.selected.length === 0 && options.untilCaughtUp)
    throw emptySelectionError({ ...selection, existing: await rt.sourceAdmin.listTopics() });
  let warnedEmpty = false;
  const warnIfNothingSelected = async () => {
    if (sync.selected.length > 0) {
      warnedEmpty = false;
      return;
    }
    if (warnedEmpty) return;
    warnedEmpty = true;
    const existing = await rt.sourceAdmin.listTopics().catch(() => undefined);
    logger.warn('no topic is selected: mirroring nothing until a selected topic appears', {
      regex: selection.regex,
      ...(existing ? { hint: emptySelectionMessage({ ...selection, existing }).message } : {}),
    });
  };
  await warnIfNothingSelected();
  const targets = new Map<
    string,
    { topic: string; partition: number; end: number; logStart: number; done: boolean }
  >();
  if (options.untilCaughtUp) {
    for (const topic of sync.selected) {
      for (const o of await rt.sourceReader.offsets(topic)) {
        targets.set(`${topic}-${o.partition}`, {
          topic,
          partition: o.partition,
          end: o.lastStable,
          logStart: o.logStart,
          done: false,
        });
      }
    }
  }

  const newGroup = (topics: string[]) =>
    new GroupMirror(rt.sourceKafka, rt.engine, {
      groupId: config.mirror.groupId,
      topics,
      partitionConcurrency: config.mirror.partitionConcurrency,
      logger,
      onBatch: (result, hw) => {
        recordsMirrored += result.mirrored;
        const key = `${result.source.topic}-${result.source.partition}`;
        failing.delete(key);
        highWatermarks.set(key, { hw, lastMirrored: result.lastMirrored });
      },
      onError: (source, error) => {
        failing.add(`${source.topic}-${source.partition}`);
        if (isKdrError(error) && !error.retryable && options.untilCaughtUp) fatal = error;
      },
    });

  let group = newGroup(sync.selected);
  await group.start();
  let stop = false;
  void options.stopped.then(() => (stop = true));
  let lastResync = Date.now();
  let lastCheckpoint = 0;
  let checkpointing: Promise<void> | undefined;
  let lastSnapshot = Date.now();
  let snapshotting: Promise<void> | undefined;
  let lastCount = 0;
  let lastTick = Date.now();
  let lastPendingReport = Date.now();
  try {
    while (!stop && !fatal) {
      await Promise.race([sleep(1000), options.stopped]);
      if (stop || fatal) break;
      if (options.untilCaughtUp) {
        for (const t of targets.values()) {
          if (!t.done) t.done = await caughtUp(rt, t, t.end, t.logStart, route);
        }
        const pending = [...targets.values()].filter((t) => !t.done);
        if (pending.length === 0) break;
        if (Date.now() - lastPendingReport >= PENDING_REPORT_MS) {
          lastPendingReport = Date.now();
          logger.info('still catching up', {
            pending: pending.slice(0, 20).map((t) => ({
              topic: t.topic,
              partition: t.partition,
              end: t.end,
              lastMirrored: rt.engine.lastMirrored(t) ?? null,
              consumedTo: highWatermarks.get(`${t.topic}-${t.partition}`)?.lastMirrored ?? null,
            })),
            partitionsPending: pending.length,
          });
        }
      }
      if (Date.now() - lastResync > (options.resyncMs ?? config.mirror.topicSyncIntervalMs)) {
        lastResync = Date.now();
        const next = await rt.topicSync.sync().catch((error) => {
          logger.warn('topic sync failed; will try again', { error: (error as Error).message });
          return sync;
        });
        const grew = next.addPartitions.length > 0 || next.selected.join() !== sync.selected.join();
        sync = next;
        await warnIfNothingSelected();
        if (grew) {
          logger.info('topic selection or partitions changed; restarting the consumer', {
            topics: next.selected,
          });
          await group.stop();
          group = newGroup(next.selected);
          await group.start();
        }
      }
      if (
        options.checkpointEveryMs &&
        !checkpointing &&
        Date.now() - lastCheckpoint >= options.checkpointEveryMs
      ) {
        lastCheckpoint = Date.now();
        checkpointing = runCheckpoint(
          { ...checkpointDeps(rt), counterpartMap: rt.counterpartMap },
          { commitOnStandby: config.checkpoint.commitOnStandby, mirrorGroups: [config.mirror.groupId] },
        )
          .then((c) =>
            // Skipped while the pair is not MIRRORING (a failover under way or done): not a failure.
            c.skipped
              ? logger.info('checkpoint skipped', { reason: c.skipped })
              : logger.debug('checkpoint taken', {
                  groups: c.groups,
                  offsets: c.checkpoints.length,
                  ...(c.notOnStandby.length ? { notOnStandby: c.notOnStandby } : {}),
                }),
          )
          .catch((error) =>
            logger.warn('checkpoint failed; will try again', { error: (error as Error).message }),
          )
          .finally(() => (checkpointing = undefined));
      }
      if (options.snapshotEveryMs && !snapshotting && Date.now() - lastSnapshot >= options.snapshotEveryMs) {
        lastSnapshot = Date.now();
        snapshotting = runSnapshot(snapshotDeps(rt, 'primary'))
          .then((s) => {
            if (s.status === 'complete')
              logger.info('snapshot taken', {
                snapshotId: s.manifest.snapshotId,
                records: s.manifest.records,
              });
          })
          .catch((error) =>
            logger.warn('snapshot failed; will try again', { error: (error as Error).message }),
          )
          .finally(() => (snapshotting = undefined));
      }
      const now = Date.now();
      let lag = 0;
      for (const { hw, lastMirrored } of highWatermarks.values())
        lag += Math.max(0, hw - 1 - (lastMirrored ?? -1));
      options.onProgress?.({
        recordsMirrored,
        recordsPerSecond: ((recordsMirrored - lastCount) * 1000) / Math.max(1, now - lastTick),
        lagOffsets: highWatermarks.size > 0 ? lag : null,
        partitionsPending: options.untilCaughtUp ? [...targets.values()].filter((t) => !t.done).length : null,
        failingPartitions: failing.size,
        topics: sync.selected.length,
      });
      lastCount = recordsMirrored;
      lastTick = now;
    }
  } finally {
    logger.debug('stopping the consumer group');
    await group.stop();
    logger.debug('consumer group stopped');
    await checkpointing;
    await snapshotting;
  }
  if (fatal) throw fatal;
  if (options.untilCaughtUp) {
    // "Caught up" means a read_committed consumer of the standby sees it all: wait for the last markers.
    for (const t of targets.values()) {
      const entry = await rt.offsetMap.latest(t);
      if (entry) await waitVisible(rt.targetReader, rt.engine.targetOf(t), entry.lastStandby + 1);
    }
  }
  return {
    recordsMirrored,
    durationMs: Date.now() - started,
    topics: sync.selected,
    partitions: await partitionLag(rt, sync.selected),
  };
}
