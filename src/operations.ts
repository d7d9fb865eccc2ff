import { createHash } from 'node:crypto';
import { createAwsClients, destroyAwsClients } from './adapters/aws/clients.ts';
import { DynamoDBRestoreStore } from './adapters/dynamodb/restoreStore.ts';
import { DynamoDBSnapshotCatalog } from './adapters/dynamodb/snapshotCatalog.ts';
import { KafkaAdmin } from './adapters/kafka/admin.ts';
import { createKafka } from './adapters/kafka/client.ts';
import { KafkaPartitionReader } from './adapters/kafka/partitionReader.ts';
import { KafkaTransactionalWriterFactory } from './adapters/kafka/transactionalWriter.ts';
import { S3ObjectStore } from './adapters/s3/objectStore.ts';
import type { ClusterConfig, KdrConfig } from './config.ts';
import { InputError } from './errors.ts';
import { type RestoreRequestInput, restoreWriteOptions } from './events/restoreRequest.ts';
import type { Logger } from './logger.ts';
import { createRuntime, type Runtime } from './runtime.ts';
import type { CheckpointDeps } from './services/checkpoint.ts';
import type { FailbackDeps } from './services/failback.ts';
import type { FailoverDeps } from './services/failover.ts';
import type { RestoreDeps, RestoreProgress, RestoreRequest } from './services/restore.ts';
import type { SnapshotDeps } from './services/snapshot.ts';
import { runSnapshot } from './services/snapshot.ts';

/** The services' dependencies out of a forward runtime (primary → standby). */

export function checkpointDeps(rt: Runtime): CheckpointDeps {
  return {
    primaryAdmin: rt.sourceAdmin,
    standbyAdmin: rt.targetAdmin,
    primaryReader: rt.sourceReader,
    offsetMap: rt.offsetMap,
    counterpartMap: rt.counterpartMap,
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
    counterpartMap: rt.counterpartMap,
    engine: rt.engine,
    writers: rt.writers,
    selectTopic: rt.selectTopic,
    selectGroup: rt.selectGroup,
    mirrorGroups: [config.mirror.groupId],
    ...(rt.mirrorSwitch ? { stopMirror: () => rt.mirrorSwitch!.set(false) } : {}),
    logger: rt.logger,
    leaseMs: config.operationLeaseMs,
    onPhase: drillHold,
    ...(owner ? { owner } : {}),
  };
}

/**
 * Drills: `KDR_DRILL_HOLD_PHASE=<phase>` (or `after:<phase>`) makes a failover or failback stop (for ever) when
 * that phase begins, after it was persisted, so a test can kill the process exactly there. Restore is not
 * wired to it: its kill drill (restoreResume.test) fires on the phase's log line.
 */
const HOLD_PHASE = process.env.KDR_DRILL_HOLD_PHASE;
export async function drillHold(phase: string): Promise<void> {
  if (phase !== HOLD_PHASE) return;
  process.stderr.write(`kdr: holding at phase ${phase} (KDR_DRILL_HOLD_PHASE)\n`);
  // A timer keeps the process alive: the drill kills it here.
  await new Promise(() => setInterval(() => {}, 60_000));
}

/**
 * Failback needs both directions: the forward runtime (primary → standby, its map and admins) and a
 * reverse runtime that mirrors the standby back to the primary (its own map and transactional ids).
 */
export function failbackDeps(
  forward: Runtime,
  owner?: string,
): { deps: FailbackDeps; close: () => Promise<void> } {
  const { config } = forward;
  const reverse = createRuntime(config, forward.logger, { direction: 'reverse' });
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
      leaseMs: config.operationLeaseMs,
      onPhase: drillHold,
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
    compression: config.snapshot.compression,
    prefix: config.snapshot.prefix,
    leaseMs: config.snapshot.leaseMs,
    logger: rt.logger,
  };
}

/** Where a restore writes: one of the pair's clusters, or any cluster by its bootstrap brokers. */
export function restoreTargetCluster(config: KdrConfig, target: string): ClusterConfig {
  if (target === 'primary' || target === 'standby') return config[target];
  const brokers = target.split(',').map((b) => b.trim());
  const bad = brokers.find((b) => !/^[A-Za-z0-9.-]+:\d{1,5}$/.test(b));
  if (bad !== undefined || brokers.length === 0)
    throw new InputError(
      `expected --target primary, standby or a comma-separated list of host:port brokers, got ${JSON.stringify(target)}`,
    );
  const hash = createHash('sha256').update(brokers.join(',')).digest('hex').slice(0, 8);
  // A cluster outside the pair: plain connections (configure it as primary or standby for TLS/SASL).
  return { alias: `restore-target-${hash}`, brokers, ssl: false };
}

/**
 * The restore function writes only to the pair's clusters, or to brokers the deployment allowed
 * (KDR_RESTORE_ALLOWED_BROKERS): whoever may invoke it must not be able to stream every snapshot to a
 * host of their choosing.
 */
export function checkRestoreTargetAllowed(config: KdrConfig, target: string): void {
  const cluster = restoreTargetCluster(config, target);
  if (target === 'primary' || target === 'standby') return;
  const refused = cluster.brokers.filter((b) => !config.restoreAllowedBrokers.includes(b));
  if (refused.length > 0)
    throw new InputError(
      `restore target ${target} is outside the pair: the restore function writes to primary, standby or brokers listed in KDR_RESTORE_ALLOWED_BROKERS (${config.restoreAllowedBrokers.join(',') || 'none'}); not allowed: ${refused.join(',')}`,
    );
}

/** The restore's dependencies against one target cluster; `close` disconnects everything it opened. */
export function restoreDeps(
  config: KdrConfig,
  logger: Logger,
  target: string,
): { deps: RestoreDeps; close: () => Promise<void> } {
  const cluster = restoreTargetCluster(config, target);
  const kafka = createKafka(cluster, `kdr-${config.pair}-restore`, logger);
  const aws = createAwsClients(config);
  const admin = new KafkaAdmin(kafka, cluster.alias);
  const reader = new KafkaPartitionReader(kafka, cluster.alias);
  const writers = new KafkaTransactionalWriterFactory(
    kafka,
    config.pair,
    cluster.alias,
    config.standbyCompression,
  );
  const objects = new S3ObjectStore(aws.s3, config.bucket);
  const catalog = new DynamoDBSnapshotCatalog(aws.dynamodb, config.stateTable, config.pair);
  return {
    deps: {
      objects,
      snapshotPrefix: config.snapshot.prefix,
      store: new DynamoDBRestoreStore<RestoreProgress>(aws.dynamodb, config.stateTable, config.pair),
      target: { label: target, admin, reader, writers },
      // The restore's own owner: a resumed restore takes back the lease its dead run held, at once.
      safetySnapshot: async (topics, options) => {
        const wanted = new Set(topics);
        const result = await runSnapshot({
          ...(options?.owner ? { owner: options.owner } : {}),
          pair: config.pair,
          cluster: cluster.alias,
          reader,
          admin,
          objects,
          catalog,
          selectTopic: (topic) => wanted.has(topic),
          segmentBytes: config.snapshot.segmentBytes,
          compression: config.snapshot.compression,
          prefix: config.snapshot.prefix,
          leaseMs: config.snapshot.leaseMs,
          logger,
        });
        if (result.status !== 'complete') throw new Error('a snapshot without a deadline always completes');
        return result.manifest.snapshotId;
      },
      maxTransactionRecords: config.mirror.maxTransactionRecords,
      maxRequestBytes: config.mirror.maxRequestBytes,
      prefetch: 2,
      logger,
    },
    close: async () => {
      await writers.close();
      await Promise.allSettled([admin.close(), reader.close()]);
      destroyAwsClients(aws);
    },
  };
}

/** The service's request out of a validated CLI or Lambda restore request. */
export function restoreServiceRequest(config: KdrConfig, request: RestoreRequestInput): RestoreRequest {
  return {
    ...(request.snapshotId !== undefined ? { snapshotId: request.snapshotId } : {}),
    ...(request.at !== undefined ? { at: request.at } : {}),
    from: config[request.from].alias,
    ...(request.topics !== undefined ? { topics: request.topics } : {}),
    rename: request.rename,
    ...(request.topicPrefix !== undefined ? { topicPrefix: request.topicPrefix } : {}),
    mode: request.mode,
    yes: request.yes,
    safetySnapshot: request.safetySnapshot,
    dryRun: request.dryRun,
    ...restoreWriteOptions(request),
  };
}
