import { type ControlState, describeConflict } from '../core/control.ts';
import { firstAtOrAfterStandby, translateCommitted } from '../core/offsetMap.ts';
import type { SourceRecord, TopicPartition } from '../core/records.ts';
import { encodeSegment } from '../core/segment.ts';
import { describeError, isKdrError, KdrError, StateError, TimeoutError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GroupAdmin, PartitionReader, TopicAdmin } from '../ports/kafka.ts';
import type { ObjectStore } from '../ports/objectStore.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import type { StateStore } from '../ports/stateStore.ts';
import {
  describeGap,
  GapLog,
  type LogStartGap,
  previousObservations,
  readFromLogStart,
  withProof,
} from './checkpoint.ts';
import { defaultOwner, drain, type GroupMove, mirroredPartitions } from './failover.ts';
import type { MirrorEngine } from './mirror.ts';

/**
 * Failback: make the old primary active again without losing anything silently.
 *
 *   1. records on the old primary that never reached the standby (after the last forward-mirrored
 *      offset) are exported to the bucket in the segment format, with a manifest, and reported;
 *   2. what the standby got since the failover is mirrored back to the primary (the reverse direction,
 *      exactly once; records that came from the primary are skipped by their kdr.origin: no cycle);
 *   3. every consumer group's standby position is translated back to the primary and committed there;
 *   4. the primary becomes active again (epoch + 1) and the forward mirror resumes.
 *
 * Applications must have stopped writing to the standby: the reverse mirror drains to zero lag within
 * the timeout, or the failback aborts back to FAILED_OVER.
 */

export interface FailbackDeps {
  pair: string;
  primaryAlias: string;
  standbyAlias: string;
  stateStore: StateStore;
  primaryAdmin: TopicAdmin & GroupAdmin;
  standbyAdmin: TopicAdmin & GroupAdmin;
  primaryReader: PartitionReader;
  standbyReader: PartitionReader;
  /** primary → standby map (what the primary had mirrored before the failover). */
  forwardMap: OffsetMapStore;
  /** standby → primary map and engine. */
  reverseMap: OffsetMapStore;
  reverseEngine: MirrorEngine;
  objectStore: ObjectStore;
  selectTopic: (topic: string) => boolean;
  selectGroup: (group: string) => boolean;
  mirrorGroups: string[];
  startMirror?: () => Promise<string[]>;
  logger: Logger;
  owner?: string;
  clock?: () => number;
}

export interface ExportedPartition {
  topic: string;
  partition: number;
  records: number;
  firstOffset: number;
  lastOffset: number;
  objects: { key: string; sha256: string; records: number; bytes: number }[];
}

export interface FailbackReport {
  pair: string;
  epoch: number;
  from: string;
  to: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /**
   * `gaps`: ranges of the primary deleted (retention, DeleteRecords) after the last forward-mirrored
   * offset before the export could read them: on neither cluster, nor in the export.
   */
  exported: {
    records: number;
    bytes: number;
    location: string | null;
    partitions: ExportedPartition[];
    gaps: LogStartGap[];
  };
  mirroredBack: number;
  /** Ranges the standby deleted before they were mirrored back: never on the primary. */
  mirroredBackGaps: LogStartGap[];
  groups: Record<string, GroupMove[]>;
  mirrorStarted: string[];
  warnings: string[];
}

const SEGMENT_RECORDS = 10_000;

/** The primary position holding the same next record as standby offset `standbyOffset`. */
export async function translateBack(
  deps: Pick<FailbackDeps, 'forwardMap' | 'reverseMap' | 'primaryReader'>,
  tp: TopicPartition,
  standbyOffset: number,
): Promise<{ primaryOffset: number; exact: boolean }> {
  // A record the primary had and mirrored (forward map, by standby offset), or one the standby got and
  // mirrored back (reverse map, by source offset): whichever comes first on the standby.
  const forward = firstAtOrAfterStandby(
    await deps.forwardMap.coveringStandby(tp, standbyOffset),
    standbyOffset,
  );
  const reverse = translateCommitted(await deps.reverseMap.covering(tp, standbyOffset), standbyOffset, null);
  const candidates: { standby: number; primary: number }[] = [];
  if (forward) candidates.push({ standby: forward.standby, primary: forward.source });
  if (reverse.kind === 'exact')
    candidates.push({ standby: reverse.mirroredSource, primary: reverse.standbyOffset });
  candidates.sort((a, b) => a.standby - b.standby);
  if (candidates[0]) return { primaryOffset: candidates[0].primary, exact: true };
  const [end] = await deps.primaryReader.offsets(tp.topic, [tp.partition]);
  return { primaryOffset: end!.lastStable, exact: false };
}

/**
 * Exports the primary's records after the last forward-mirrored offset; from the partition's current log
 * start when that is later (what it passed is a gap).
 */
async function exportUnmirrored(
  deps: FailbackDeps,
  partitions: TopicPartition[],
  prefix: string,
  gaps: GapLog,
): Promise<ExportedPartition[]> {
  const clock = deps.clock ?? Date.now;
  const exported: ExportedPartition[] = [];
  for (const tp of partitions) {
    const [offsets] = await deps.primaryReader.offsets(tp.topic, [tp.partition]);
    const latest = await deps.forwardMap.latest(tp);
    const from = latest ? latest.lastSource + 1 : offsets!.logStart;
    if (from >= offsets!.lastStable) continue;
    const part: ExportedPartition = {
      topic: tp.topic,
      partition: tp.partition,
      records: 0,
      firstOffset: -1,
      lastOffset: -1,
      objects: [],
    };
    let pending: SourceRecord[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const segment = encodeSegment(pending);
      const key = `${prefix}/${tp.topic}/${tp.partition}/${String(segment.firstOffset).padStart(20, '0')}-${String(segment.lastOffset).padStart(20, '0')}.kdrseg`;
      await deps.objectStore.put(key, segment.data, { contentType: 'application/octet-stream' });
      part.objects.push({ key, sha256: segment.sha256, records: segment.records, bytes: segment.bytes });
      part.records += segment.records;
      if (part.firstOffset < 0) part.firstOffset = segment.firstOffset;
      part.lastOffset = segment.lastOffset;
      pending = [];
    };
    for await (const records of readFromLogStart(deps.primaryReader, tp, from, offsets!.lastStable, {
      logStart: offsets!.logStart,
      onGap: (gap) => gaps.add(gap),
      clock,
    })) {
      pending.push(...records);
      if (pending.length >= SEGMENT_RECORDS) await flush();
    }
    await flush();
    if (part.records > 0) exported.push(part);
  }
  return exported;
}

export async function failback(deps: FailbackDeps, options: { timeoutMs: number }): Promise<FailbackReport> {
  const clock = deps.clock ?? Date.now;
  const owner = deps.owner ?? defaultOwner();
  const started = clock();
  const log = deps.logger.child({ pair: deps.pair, operation: 'failback' });
  const control = await deps.stateStore.getControl();
  if (control.state !== 'FAILED_OVER' || control.activeCluster !== deps.standbyAlias) {
    throw new StateError('STATE_CONFLICT', describeConflict(control, 'FAILING_BACK'), {
      details: { pair: deps.pair, epoch: control.epoch, state: control.state },
    });
  }
  const operation = { kind: 'failback' as const, startedAt: started, owner };
  const failing = await deps.stateStore.transition(control.epoch, {
    state: 'FAILING_BACK',
    activeCluster: deps.standbyAlias,
    operation,
    owner,
    reason: 'failback',
  });
  const warnings: string[] = [];
  let current: ControlState = failing;
  try {
    const partitions = await mirroredPartitions(deps.standbyAdmin, deps.selectTopic);
    const onPrimary = new Set(await deps.primaryAdmin.listTopics());

    // 1. What the primary has that the standby never got: exported and reported, never dropped silently.
    const prefix = `failback/${deps.pair}/epoch-${failing.epoch}`;
    const found = new GapLog();
    const exported = await exportUnmirrored(
      deps,
      partitions.filter((tp) => onPrimary.has(tp.topic)),
      prefix,
      found,
    );
    // The last checkpoint before the failover can prove that a gap held only transaction markers.
    const exportGaps = new GapLog();
    if (found.list().length > 0) {
      const earlier = await previousObservations(deps.stateStore, log);
      for (const gap of found.list()) exportGaps.add(withProof(gap, earlier));
    }
    for (const gap of exportGaps.list())
      if (!gap.markersOnly) log.warn(describeGap(gap, deps.primaryAlias), { gap });
    const exportedRecords = exported.reduce((n, p) => n + p.records, 0);
    let location: string | null = null;
    if (exportedRecords > 0) {
      const manifestKey = `${prefix}/manifest.json`;
      const manifest = {
        format: 'kdr-segment-v1',
        pair: deps.pair,
        epoch: failing.epoch,
        cluster: deps.primaryAlias,
        createdAt: new Date(clock()).toISOString(),
        reason: 'records on the old primary after the last mirrored offset, never on the standby',
        records: exportedRecords,
        partitions: exported,
        gaps: exportGaps.list(),
      };
      await deps.objectStore.put(manifestKey, JSON.stringify(manifest, null, 2), {
        ifNoneMatch: true,
        contentType: 'application/json',
      });
      location = deps.objectStore.url(manifestKey);
      warnings.push(
        `${exportedRecords} records on ${deps.primaryAlias} never reached ${deps.standbyAlias}; exported to ${location}`,
      );
      log.warn('exported records the standby never got', { records: exportedRecords, location });
    }

    // 2. What the standby got since the failover goes back to the primary, exactly once.
    // Before the last forward-mirrored record, the standby holds only copies of the primary's records.
    const {
      pending,
      drained,
      gaps: mirroredBackGaps,
    } = await drain(
      {
        engine: deps.reverseEngine,
        reader: deps.standbyReader,
        offsetMap: deps.reverseMap,
        counterpartMap: deps.forwardMap,
        ...(deps.standbyAdmin.topicIds
          ? { sourceAdmin: { topicIds: (t: string[]) => deps.standbyAdmin.topicIds!(t) } }
          : {}),
        route: { sourceAlias: deps.standbyAlias, targetAlias: deps.primaryAlias },
        floor: async (tp) => {
          const forward = await deps.forwardMap.latest(tp);
          return forward ? forward.lastStandby + 1 : undefined;
        },
      },
      partitions,
      started + options.timeoutMs,
      clock,
    );
    for (const gap of mirroredBackGaps) log.warn(describeGap(gap, deps.standbyAlias), { gap });
    if (pending.length > 0) {
      throw new TimeoutError(
        `the standby's records did not all reach the primary within ${options.timeoutMs / 1000} s (${pending.length} partitions behind); are applications still writing to the standby?`,
      );
    }

    // 3. Groups back to the primary.
    const groups: Record<string, GroupMove[]> = {};
    const topics = [...new Set(partitions.map((p) => p.topic))];
    for (const group of (await deps.standbyAdmin.listGroups()).filter(
      (g) => deps.selectGroup(g) && !deps.mirrorGroups.includes(g) && !g.startsWith('kdr-mirror-'),
    )) {
      const committed = await deps.standbyAdmin.committedOffsets(group, topics);
      if (committed.length === 0) continue;
      const state = await deps.primaryAdmin.groupState(group);
      if (state !== 'Empty' && state !== 'Dead') {
        warnings.push(
          `group ${group} has running consumers on the primary (${state}); its offsets were not moved back`,
        );
        continue;
      }
      const moves: GroupMove[] = [];
      for (const c of committed) {
        const back = await translateBack(deps, c, c.offset);
        moves.push({
          topic: c.topic,
          partition: c.partition,
          sourceOffset: c.offset,
          standbyOffset: back.primaryOffset,
          exact: back.exact,
        });
      }
      await deps.primaryAdmin.commitOffsets(
        group,
        moves.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.standbyOffset })),
      );
      groups[group] = moves;
    }

    // 4. The primary is active again; the forward mirror may write.
    await deps.reverseEngine.close();
    current = await deps.stateStore.transition(failing.epoch, {
      state: 'MIRRORING',
      activeCluster: deps.primaryAlias,
      operation,
      owner,
      reason: 'failback done',
    });
    const mirrorStarted = deps.startMirror
      ? await deps.startMirror().catch((error) => {
          warnings.push(`could not start the mirror's event sources: ${describeError(error)}`);
          return [];
        })
      : [];
    const finished = clock();
    return {
      pair: deps.pair,
      epoch: current.epoch,
      from: deps.standbyAlias,
      to: deps.primaryAlias,
      startedAt: new Date(started).toISOString(),
      finishedAt: new Date(finished).toISOString(),
      durationMs: finished - started,
      exported: {
        records: exportedRecords,
        bytes: exported.reduce((n, p) => n + p.objects.reduce((m, o) => m + o.bytes, 0), 0),
        location,
        partitions: exported,
        gaps: exportGaps.list(),
      },
      mirroredBack: drained,
      mirroredBackGaps,
      groups,
      mirrorStarted,
      warnings,
    };
  } catch (error) {
    if (current.epoch === failing.epoch) {
      await deps.stateStore
        .transition(failing.epoch, {
          state: 'FAILED_OVER',
          activeCluster: deps.standbyAlias,
          operation,
          owner,
          reason: `failback aborted: ${describeError(error)}`,
        })
        .catch((abortError) =>
          log.error('could not return the pair to FAILED_OVER', { error: describeError(abortError) }),
        );
      const message = `failback aborted, pair ${deps.pair} is back to FAILED_OVER: ${describeError(error)}`;
      throw isKdrError(error)
        ? new KdrError(error.code, message, { cause: error, details: error.details })
        : new KdrError('KAFKA_REQUEST_FAILED', message, { cause: error });
    }
    throw error;
  }
}
