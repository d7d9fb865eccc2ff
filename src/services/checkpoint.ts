import pLimit from 'p-limit';
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
  const topics = await deps.primaryAdmin.listTopics();
  return topics.filter((name) => !isInternalTopic(name) && deps.selectTopic(name)).sort();
}

/**
 * Translates many committed offsets at once: one range Query per partition (the entries between the
 * smallest and the largest offset), then every offset against those entries. null: beyond what is mirrored.
 */
export async function translateAll<T extends TopicPartition & { offset: number }>(
  offsetMap: OffsetMapStore,
  items: T[],
  concurrency = 8,
): Promise<(T & { standbyOffset: number | null })[]> {
  const byPartition = new Map<string, T[]>();
  for (const item of items) {
    const key = `${item.topic}\u0000${item.partition}`;
    byPartition.set(key, [...(byPartition.get(key) ?? []), item]);
  }
  const limit = pLimit(concurrency);
  const translated = await Promise.all(
    [...byPartition.values()].map((group) =>
      limit(async () => {
        const offsets = group.map((g) => g.offset);
        const entries = await offsetMap.coveringRange(group[0]!, Math.min(...offsets), Math.max(...offsets));
        return group.map((item) => {
          const entry = entries.find((e) => e.lastSource >= item.offset);
          const t = translateCommitted(entry, item.offset, null);
          return { ...item, standbyOffset: t.kind === 'exact' ? t.standbyOffset : null };
        });
      }),
    ),
  );
  return translated.flat();
}

export async function runCheckpoint(
  deps: CheckpointDeps,
  options: { commitOnStandby: boolean; mirrorGroups: string[] },
): Promise<CheckpointResult> {
  const clock = deps.clock ?? Date.now;
  const topics = await mirroredTopics(deps);
  const warnings: string[] = [];
  const groups = (await deps.primaryAdmin.listGroups()).filter(
    (g) => deps.selectGroup(g) && !options.mirrorGroups.includes(g) && !g.startsWith('kdr-mirror-'),
  );
  // Groups, translations and partitions in parallel (bounded): a failover's RTO includes this.
  const limit = pLimit(16);
  const perGroup = await Promise.all(
    groups.map((group) =>
      limit(async () => {
        const committed = await deps.primaryAdmin.committedOffsets(group, topics);
        const at = clock();
        return committed.map((c) => ({ group, ...c, at }));
      }),
    ),
  );
  const checkpoints: GroupCheckpoint[] = (await translateAll(deps.offsetMap, perGroup.flat())).map((c) => ({
    group: c.group,
    topic: c.topic,
    partition: c.partition,
    sourceOffset: c.offset,
    standbyOffset: c.standbyOffset,
    checkpointedAt: c.at,
  }));
  const observations: PartitionObservation[] = (
    await Promise.all(
      topics.map(async (topic) =>
        Promise.all(
          (
            await deps.primaryReader.offsets(topic)
          ).map((o) =>
            limit(async () => {
              const tp = { topic, partition: o.partition };
              const latest = await deps.offsetMap.latest(tp);
              const lastMirrored = latest?.lastSource ?? null;
              let firstUnmirroredTimestamp: number | null = null;
              const from = lastMirrored === null ? o.logStart : lastMirrored + 1;
              if (from < o.lastStable) {
                const fetched = await deps.primaryReader.fetch(tp, from, { maxBytes: 64 * 1024 });
                firstUnmirroredTimestamp = fetched.records[0]?.timestamp ?? null;
              }
              return {
                topic,
                partition: o.partition,
                endOffset: o.lastStable,
                lastMirrored,
                firstUnmirroredTimestamp,
                observedAt: clock(),
              };
            }),
          ),
        ),
      ),
    )
  ).flat();
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
