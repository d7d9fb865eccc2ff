import { createRuntime, type Runtime } from './runtime.ts';
import type { CheckpointDeps } from './services/checkpoint.ts';
import type { FailbackDeps } from './services/failback.ts';
import type { FailoverDeps } from './services/failover.ts';
import type { SnapshotDeps } from './services/snapshot.ts';

/** The services' dependencies out of a forward runtime (primary → standby). */

export function checkpointDeps(rt: Runtime): CheckpointDeps {
  return {
    primaryAdmin: rt.sourceAdmin,
    standbyAdmin: rt.targetAdmin,
    primaryReader: rt.sourceReader,
    offsetMap: rt.offsetMap,
    stateStore: rt.stateStore,
    selectTopic: rt.selectTopic,
    selectGroup: rt.selectGroup,
    logger: rt.logger,
  };
}

export function failoverDeps(rt: Runtime, owner?: string): FailoverDeps {
  const { config } = rt;
  return {
    pair: config.pair,
    primaryAlias: config.primary.alias,
    standbyAlias: config.standby.alias,
    stateStore: rt.stateStore,
    primaryAdmin: rt.sourceAdmin,
    standbyAdmin: rt.targetAdmin,
    primaryReader: rt.sourceReader,
    standbyReader: rt.targetReader,
    offsetMap: rt.offsetMap,
    engine: rt.engine,
    writers: rt.writers,
    selectTopic: rt.selectTopic,
    selectGroup: rt.selectGroup,
    mirrorGroups: [config.mirror.groupId],
    ...(rt.mirrorSwitch ? { stopMirror: () => rt.mirrorSwitch!.set(false) } : {}),
    logger: rt.logger,
    ...(owner ? { owner } : {}),
  };
}

/**
 * Failback needs both directions: the forward runtime (primary → standby, its map and admins) and a
 * reverse runtime that mirrors the standby back to the primary. The reverse engine's recovery starts
 * after the last forward-mirrored record on the primary: nothing mirrored back can precede it.
 */
export function failbackDeps(
  forward: Runtime,
  owner?: string,
): { deps: FailbackDeps; close: () => Promise<void> } {
  const { config } = forward;
  const reverse = createRuntime(config, forward.logger, {
    direction: 'reverse',
    recoveryFloor: async (tp) => {
      const latest = await forward.offsetMap.latest(tp);
      return latest ? latest.lastSource + 1 : undefined;
    },
  });
  return {
    deps: {
      pair: config.pair,
      primaryAlias: config.primary.alias,
      standbyAlias: config.standby.alias,
      stateStore: forward.stateStore,
      primaryAdmin: forward.sourceAdmin,
      standbyAdmin: forward.targetAdmin,
      primaryReader: forward.sourceReader,
      standbyReader: forward.targetReader,
      forwardMap: forward.offsetMap,
      reverseMap: reverse.offsetMap,
      reverseEngine: reverse.engine,
      objectStore: forward.objectStore,
      selectTopic: forward.selectTopic,
      selectGroup: forward.selectGroup,
      mirrorGroups: [config.mirror.groupId],
      ...(forward.mirrorSwitch ? { startMirror: () => forward.mirrorSwitch!.set(true) } : {}),
      logger: forward.logger,
      ...(owner ? { owner } : {}),
    },
    close: () => reverse.close(),
  };
}

/** Snapshot dependencies for one cluster of the pair: 'primary' (default) or 'standby'. */
export function snapshotDeps(rt: Runtime, cluster: 'primary' | 'standby'): SnapshotDeps {
  const { config } = rt;
  const onSource = (cluster === 'primary') === (rt.direction === 'forward');
  return {
    pair: config.pair,
    cluster: cluster === 'primary' ? config.primary.alias : config.standby.alias,
    reader: onSource ? rt.sourceReader : rt.targetReader,
    admin: onSource ? rt.sourceAdmin : rt.targetAdmin,
    objects: rt.objectStore,
    catalog: rt.snapshotCatalog,
    selectTopic: rt.selectTopic,
    segmentBytes: config.snapshot.segmentBytes,
    prefix: config.snapshot.prefix,
    leaseMs: config.snapshot.leaseMs,
    logger: rt.logger,
  };
}
