import type { ControlState } from '../core/control.ts';
import { checkpointDeps } from '../operations.ts';
import type { Runtime } from '../runtime.ts';
import { mirroredTopics } from './checkpoint.ts';
import { type PartitionLag, partitionLag } from './lag.ts';

/**
 * The pair at a glance (`kdr status`, the status function): control state and history, the newest
 * checkpoint's age, and per-partition lag. The primary may be down (after an unplanned failover): lag is
 * then unknown, not an error.
 */
export async function pairStatus(runtime: Runtime, now = Date.now()) {
  const { config } = runtime;
  const [control, history, checkpoints] = await Promise.all([
    runtime.stateStore.getControl(),
    runtime.stateStore.history(10),
    runtime.stateStore.getCheckpoints(),
  ]);
  const lag = await mirroredTopics(checkpointDeps(runtime))
    .then((topics) =>
      partitionLag(runtime, topics)
        .then((rows) => withGenerations(runtime, topics, rows))
        .then((partitions) => ({ topics, partitions, error: null })),
    )
    .catch((error: Error) => ({ topics: [] as string[], partitions: [], error: error.message }));
  return {
    pair: config.pair,
    primary: config.primary.alias,
    standby: config.standby.alias,
    control: {
      state: control.state,
      activeCluster: control.activeCluster,
      epoch: control.epoch,
      updatedAt: control.updatedAt || null,
    },
    operation: operationStatus(control.operation, now),
    history,
    checkpoint: {
      at: checkpoints.at,
      ageSeconds: checkpoints.at === null ? null : (now - checkpoints.at) / 1000,
      groups: new Set(checkpoints.groups.map((g) => g.group)).size,
    },
    topics: lag.topics,
    totalLagOffsets: lag.partitions.reduce((n, p) => n + p.lagOffsets, 0),
    partitions: lag.partitions,
    ...(lag.error ? { lagError: lag.error } : {}),
  };
}

/** The failover or failback in progress (or last ended): its phase, owner and lease, for operators. */
function operationStatus(op: ControlState['operation'], now: number) {
  if (!op) return null;
  const running = !op.outcome;
  return {
    id: op.id,
    kind: op.kind,
    ...(op.mode ? { mode: op.mode } : {}),
    phase: op.phase,
    outcome: op.outcome ?? 'in-progress',
    owner: op.owner,
    startedAt: new Date(op.startedAt).toISOString(),
    finishedAt: op.finishedAt ? new Date(op.finishedAt).toISOString() : null,
    leaseUntil: op.leaseUntil > 0 ? new Date(op.leaseUntil).toISOString() : null,
    // In progress with no live lease: its run ended or died; the same command resumes it.
    leaseExpired: running ? op.leaseUntil <= now : null,
  };
}

export type PairStatus = Awaited<ReturnType<typeof pairStatus>>;

/**
 * Each partition's topic generation, when it last changed and why, and the ranges the source deleted
 * before they were mirrored (gaps), from the offset map's partition heads.
 */
async function withGenerations(runtime: Runtime, topics: string[], rows: PartitionLag[]) {
  const ids = await runtime.sourceAdmin.topicIds(topics).catch(() => new Map<string, string>());
  return Promise.all(
    rows.map(async (row) => {
      const head = await runtime.offsetMap.head(row, { cached: true });
      const liveId = ids.get(row.topic) ?? null;
      const changed = head?.previous[0];
      return {
        ...row,
        generation: head?.generation ?? 1,
        topicId: liveId,
        // The source topic was re-created and the mirror has not begun its new generation yet.
        generationPending: Boolean(head?.sourceTopicId && liveId && head.sourceTopicId !== liveId),
        generationChanged: changed
          ? { at: new Date(changed.endedAt).toISOString(), reason: changed.reason, from: changed.generation }
          : null,
        gaps: (head?.gaps ?? []).map((g) => ({ ...g, seenAt: new Date(g.seenAt).toISOString() })),
      };
    }),
  );
}
