import { checkpointDeps } from '../operations.ts';
import type { Runtime } from '../runtime.ts';
import { mirroredTopics } from './checkpoint.ts';
import { partitionLag } from './lag.ts';

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
      partitionLag(runtime, topics).then((partitions) => ({ topics, partitions, error: null })),
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

export type PairStatus = Awaited<ReturnType<typeof pairStatus>>;
