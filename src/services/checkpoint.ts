import { translateCommitted } from '../core/offsetMap.ts';
import type { TopicPartition } from '../core/records.ts';
import { isInternalTopic } from '../core/topicSync.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GroupAdmin, PartitionReader, TopicAdmin } from '../ports/kafka.ts';
import type { OffsetMapStore } from '../ports/offsetMapStore.ts';
import type { GroupCheckpoint, PartitionObservation, StateStore } from '../ports/stateStore.ts';

/**
 * Checkpoints: every consumer group's committed offsets on the primary for the mirrored topics,
 * translated through the offset map and stored with the time; plus what the primary's partitions looked
 * like (end offsets, what was not yet mirrored), which an unplanned failover uses to report its RPO.
 */

export interface CheckpointDeps {
  primaryAdmin: TopicAdmin & GroupAdmin;
  standbyAdmin: GroupAdmin;
  primaryReader: PartitionReader;
  offsetMap: OffsetMapStore;
  stateStore: StateStore;
  selectTopic: (topic: string) => boolean;
  selectGroup: (group: string) => boolean;
  logger: Logger;
  clock?: () => number;
}

export interface CheckpointResult {
  at: number;
  groups: number;
  checkpoints: GroupCheckpoint[];
  observations: PartitionObservation[];
  committedOnStandby: string[];
  warnings: string[];
}

export async function mirroredTopics(
  deps: Pick<CheckpointDeps, 'primaryAdmin' | 'selectTopic'>,
): Promise<string[]> {
  const topics = await deps.primaryAdmin.describeTopics();
  return topics
    .filter((t) => !isInternalTopic(t.name, t.internal) && deps.selectTopic(t.name))
    .map((t) => t.name)
    .sort();
}

/** Translates (topic, partition, committed offset) through the map, once per distinct key. */
export function translator(offsetMap: OffsetMapStore) {
  const cache = new Map<string, Promise<number | null>>();
  return (tp: TopicPartition, offset: number): Promise<number | null> => {
    const key = `${tp.topic}\u0000${tp.partition}\u0000${offset}`;
    let result = cache.get(key);
    if (!result) {
      result = offsetMap.covering(tp, offset).then((entry) => {
        const t = translateCommitted(entry, offset, null);
        return t.kind === 'exact' ? t.standbyOffset : null;
      });
      cache.set(key, result);
    }
    return result;
  };
}

export async function runCheckpoint(
  deps: CheckpointDeps,
  options: { commitOnStandby: boolean; mirrorGroups: string[] },
): Promise<CheckpointResult> {
  const clock = deps.clock ?? Date.now;
  const topics = await mirroredTopics(deps);
  const translate = translator(deps.offsetMap);
  const warnings: string[] = [];
  const groups = (await deps.primaryAdmin.listGroups()).filter(
    (g) => deps.selectGroup(g) && !options.mirrorGroups.includes(g) && !g.startsWith('kdr-mirror-'),
  );
  const checkpoints: GroupCheckpoint[] = [];
  for (const group of groups) {
    const committed = await deps.primaryAdmin.committedOffsets(group, topics);
    const at = clock();
    for (const c of committed) {
      checkpoints.push({
        group,
        ...c,
        sourceOffset: c.offset,
        standbyOffset: await translate(c, c.offset),
        checkpointedAt: at,
      });
    }
  }
  const observations: PartitionObservation[] = [];
  for (const topic of topics) {
    for (const o of await deps.primaryReader.offsets(topic)) {
      const tp = { topic, partition: o.partition };
      const latest = await deps.offsetMap.latest(tp);
      const lastMirrored = latest?.lastSource ?? null;
      let firstUnmirroredTimestamp: number | null = null;
      const from = lastMirrored === null ? o.logStart : lastMirrored + 1;
      if (from < o.lastStable) {
        const fetched = await deps.primaryReader.fetch(tp, from, { maxBytes: 64 * 1024 });
        firstUnmirroredTimestamp = fetched.records[0]?.timestamp ?? null;
      }
      observations.push({
        topic,
        partition: o.partition,
        endOffset: o.lastStable,
        lastMirrored,
        firstUnmirroredTimestamp,
        observedAt: clock(),
      });
    }
  }
  const at = clock();
  await deps.stateStore.putCheckpoints({ groups: checkpoints, observations, at });

  const committedOnStandby: string[] = [];
  if (options.commitOnStandby) {
    for (const group of [...new Set(checkpoints.map((c) => c.group))]) {
      const offsets = checkpoints
        .filter((c) => c.group === group && c.standbyOffset !== null)
        .map((c) => ({ topic: c.topic, partition: c.partition, offset: c.standbyOffset! }));
      if (offsets.length === 0) continue;
      try {
        const state = await deps.standbyAdmin.groupState(group);
        if (state !== 'Empty' && state !== 'Dead') {
          warnings.push(`group ${group} is ${state} on the standby: its offsets there were left alone`);
          continue;
        }
        await deps.standbyAdmin.commitOffsets(group, offsets);
        committedOnStandby.push(group);
      } catch (error) {
        warnings.push(`group ${group}: committing on the standby failed: ${describeError(error)}`);
      }
    }
  }
  for (const w of warnings) deps.logger.warn(w);
  return {
    at,
    groups: new Set(checkpoints.map((c) => c.group)).size,
    checkpoints,
    observations,
    committedOnStandby,
    warnings,
  };
}
