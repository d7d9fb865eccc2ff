import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import { GroupMirror } from '../adapters/kafka/groupMirror.ts';
import type { TopicPartition } from '../core/records.ts';
import { emptySelectionMessage } from '../core/topicSync.ts';
import { isKdrError, type KdrError } from '../errors.ts';
import { checkpointDeps, snapshotDeps } from '../operations.ts';
import type { Runtime } from '../runtime.ts';
import { runCheckpoint } from '../services/checkpoint.ts';
import {
  caughtUp,
  type LatestKnown,
  liveLatest,
  type PartitionLag,
  partitionLag,
  waitVisible,
} from '../services/lag.ts';
import { runSnapshot } from '../services/snapshot.ts';
import { emptySelectionError } from './context.ts';

/**
 * The mirror as a long-running process: topic sync, a consumer group feeding the engine, periodic
 * re-sync (new topics, more partitions restart the consumer with the new selection), a status line, and
 * optionally an end once the standby has everything the source had at start.
 */

/** How often `--until-caught-up` names the partitions it still waits for. */
const PENDING_REPORT_MS = 15_000;

/** Partitions checked against the map and the source at once (each is a few reads). */
const CAUGHT_UP_READS = 16;
/** Most partitions checked by reading in one pass (about a second), those checked longest ago first. */
const CAUGHT_UP_READS_PER_PASS = 32;
/** How long a partition the engine cannot yet call caught up waits between checks that read. */
const CAUGHT_UP_RECHECK_MS = 2000;
/**
 * A partition this process mirrors is checked by reading only once no batch of it came for this long (its
 * tail may be markers or copies, which the engine never writes); before its first batch, that long after
 * the start.
 */
const IDLE_BEFORE_READ_MS = 1000;
const FIRST_BATCH_GRACE_MS = 5000;
/** How long what a writer here learned of its partition stands in for the map in these checks. */
const WRITER_ENTRY_TRUSTED_MS = 30_000;

export interface CatchUpTarget extends TopicPartition {
  end: number;
  logStart: number;
  done: boolean;
  /** When the partition was last checked against the map and the source. */
  checkedAt: number;
}

/**
 * Marks the targets that are caught up. A partition this process mirrored up to the end needs no read (its
 * engine committed it, or recovered it from the map); one with nothing to mirror neither. The others
 * (mirrored by another member of the group, or ending in transaction markers, aborted records or copies of
 * the standby's own records) are checked by reading every few seconds, a few at a time and a bounded number
 * per pass: read one after the other, every second, a thousand partitions took minutes and crowded the
 * offset table while the mirror wrote.
 */
export async function checkCaughtUp(
  rt: Runtime,
  targets: CatchUpTarget[],
  route: { sourceAlias: string; targetAlias: string },
  activity: { started: number; lastBatchAt: (tp: TopicPartition) => number | undefined },
): Promise<void> {
  const now = Date.now();
  const reads: CatchUpTarget[] = [];
  for (const t of targets) {
    if (t.done) continue;
    const known = rt.engine.lastMirrored(t);
    if (t.end <= t.logStart || (typeof known === 'number' && known >= t.end - 1)) {
      t.done = true;
      continue;
    }
    // Before the group's first assignment nothing says which partitions another member holds: the
    // ones assigned here will be known without a read.
    if (!rt.engine.assignmentKnown) continue;
    if (now - t.checkedAt < CAUGHT_UP_RECHECK_MS) continue;
    // Its writer is being opened and recovered here: the engine will know it without a read.
    if (rt.engine.isPreparing(t)) continue;
    if (rt.engine.latestKnown(t).known) {
      const last = activity.lastBatchAt(t);
      const quietSince = last ?? activity.started + FIRST_BATCH_GRACE_MS - IDLE_BEFORE_READ_MS;
      if (now - quietSince < IDLE_BEFORE_READ_MS) continue;
    }
    reads.push(t);
  }
  reads.sort((a, b) => a.checkedAt - b.checkedAt);
  const pass = reads.slice(0, CAUGHT_UP_READS_PER_PASS);
  if (pass.length === 0) return;
  // What a writer here learned lately needs no map read: only the source's tail is read. Not for
  // long: a rebalance this process has not seen yet may have let another writer fence it and mirror
  // more, and the writer finds out only with its next batch; the map then tells. For the others, the
  // pass's topic ids in one request and heads in one batch (each only warms what the reads below need),
  // then a latest read each.
  const trusted = (t: TopicPartition): LatestKnown | undefined => {
    const held = rt.engine.latestKnown(t);
    return held.known && held.at !== undefined && now - held.at < WRITER_ENTRY_TRUSTED_MS ? held : undefined;
  };
  const unknown = pass.filter((t) => !trusted(t));
  const [liveIds] =
    unknown.length === 0
      ? [undefined]
      : await Promise.all([
          rt.sourceAdmin.topicIds?.([...new Set(unknown.map((t) => t.topic))]).catch(() => undefined),
          rt.offsetMap.prefetchHeads?.(unknown).catch(() => {}),
        ]);
  const limit = pLimit(CAUGHT_UP_READS);
  await Promise.all(
    pass.map((t) =>
      limit(async () => {
        t.checkedAt = Date.now();
        const latest = trusted(t) ?? { known: true as const, entry: await liveLatest(rt, t, liveIds) };
        t.done = await caughtUp(rt, t, t.end, t.logStart, route, latest);
      }),
    ),
  );
}

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
  const highWatermarks = new Map<string, { hw: number; lastMirrored: number | null; at: number }>();

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
  const targets = new Map<string, CatchUpTarget>();
  if (options.untilCaughtUp) {
    for (const topic of sync.selected) {
      for (const o of await rt.sourceReader.offsets(topic)) {
        targets.set(`${topic}-${o.partition}`, {
          topic,
          partition: o.partition,
          end: o.lastStable,
          logStart: o.logStart,
          done: false,
          // The first check that reads comes a second after the start, as the first pass.
          checkedAt: started + 1000 - CAUGHT_UP_RECHECK_MS,
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
        highWatermarks.set(key, { hw, lastMirrored: result.lastMirrored, at: Date.now() });
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
        await checkCaughtUp(rt, [...targets.values()], route, {
          started,
          lastBatchAt: (tp) => highWatermarks.get(`${tp.topic}-${tp.partition}`)?.at,
        });
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
    await waitAllVisible(rt, [...targets.values()]);
  }
  return {
    recordsMirrored,
    durationMs: Date.now() - started,
    topics: sync.selected,
    partitions: await partitionLag(rt, sync.selected, Date.now(), (tp) => rt.engine.latestKnown(tp)),
  };
}

/**
 * Waits until read_committed consumers of the standby see the last mirrored transaction of every
 * partition. The entries come from the engine where it holds the writer (from the map otherwise); the
 * standby's offsets are read once per topic, and only partitions not yet visible are polled.
 */
async function waitAllVisible(rt: Runtime, partitions: TopicPartition[]): Promise<void> {
  const limit = pLimit(CAUGHT_UP_READS);
  const ends = new Map<string, { target: TopicPartition; end: number }[]>();
  await Promise.all(
    partitions.map((tp) =>
      limit(async () => {
        const known = rt.engine.latestKnown(tp);
        const entry = known.known ? known.entry : await rt.offsetMap.latest(tp);
        if (!entry) return;
        const target = rt.engine.targetOf(tp);
        const list = ends.get(target.topic) ?? [];
        list.push({ target, end: entry.lastStandby + 1 });
        ends.set(target.topic, list);
      }),
    ),
  );
  for (const [topic, list] of ends) {
    const stable = new Map(
      (
        await rt.targetReader.offsets(
          topic,
          list.map((e) => e.target.partition),
        )
      ).map((o) => [o.partition, o.lastStable]),
    );
    await Promise.all(
      list
        .filter((e) => (stable.get(e.target.partition) ?? -1) < e.end)
        .map((e) => limit(() => waitVisible(rt.targetReader, e.target, e.end))),
    );
  }
}
