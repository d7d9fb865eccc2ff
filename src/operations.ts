import type { Runtime } from './runtime.ts';
import type { CheckpointDeps } from './services/checkpoint.ts';
import type { FailoverDeps } from './services/failover.ts';

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
