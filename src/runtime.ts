import { LambdaClient } from '@aws-sdk/client-lambda';
import { recordAwsCalls } from './adapters/aws/callLog.ts';
import { createAwsClients, destroyAwsClients } from './adapters/aws/clients.ts';
import { EventSourceSwitch } from './adapters/aws/eventSources.ts';
import { DynamoDBOffsetMapStore } from './adapters/dynamodb/offsetMapStore.ts';
import { DynamoDBSnapshotCatalog } from './adapters/dynamodb/snapshotCatalog.ts';
import { DynamoDBStateStore } from './adapters/dynamodb/stateStore.ts';
import { KafkaAdmin } from './adapters/kafka/admin.ts';
import { createKafka } from './adapters/kafka/client.ts';
import { KafkaPartitionReader } from './adapters/kafka/partitionReader.ts';
import { KafkaTransactionalWriterFactory } from './adapters/kafka/transactionalWriter.ts';
import { S3ObjectStore } from './adapters/s3/objectStore.ts';
import type { ClusterConfig, KdrConfig } from './config.ts';
import { forwardMirrorAllowed, reverseMirrorAllowed } from './core/control.ts';
import { freshRead } from './core/freshRead.ts';
import type { TopicPartition } from './core/records.ts';
import { topicSelector } from './core/topicSync.ts';
import { InputError, StateError } from './errors.ts';
import type { Logger } from './logger.ts';
import { MirrorEngine } from './services/mirror.ts';
import { TopicSyncService } from './services/topicSync.ts';

/**
 * The composition root: every adapter built from the configuration, once per process (a Lambda container
 * keeps it between invocations). Nothing connects until first used.
 *
 * A runtime mirrors one way: `forward` copies the primary to the standby; `reverse` (failback) copies the
 * standby back to the primary. Each direction has its own offset map and transactional ids.
 */

export type Direction = 'forward' | 'reverse';

export interface RuntimeOptions {
  direction?: Direction;
  /** Replaces the control-state guard checked before every transaction (tests). */
  guard?: (tp: TopicPartition) => Promise<void>;
}

export function routeOf(
  config: KdrConfig,
  direction: Direction,
): { source: ClusterConfig; target: ClusterConfig } {
  return direction === 'forward'
    ? { source: config.primary, target: config.standby }
    : { source: config.standby, target: config.primary };
}

export function createRuntime(config: KdrConfig, logger: Logger, options: RuntimeOptions = {}) {
  const direction = options.direction ?? 'forward';
  const { source, target } = routeOf(config, direction);
  const sourceKafka = createKafka(source, `kdr-${config.pair}-${source.alias}`, logger);
  const targetKafka = createKafka(target, `kdr-${config.pair}-${target.alias}`, logger);
  const aws = createAwsClients(config);
  const sourceReader = new KafkaPartitionReader(sourceKafka, source.alias);
  const targetReader = new KafkaPartitionReader(targetKafka, target.alias);
  const sourceAdmin = new KafkaAdmin(sourceKafka, source.alias);
  const targetAdmin = new KafkaAdmin(targetKafka, target.alias);
  const offsetMap = new DynamoDBOffsetMapStore(aws.dynamodb, config.offsetTable, config.pair, source.alias);
  // The other direction's map: it proves which records here are kdr's copies of the target's records.
  const counterpartMap = new DynamoDBOffsetMapStore(
    aws.dynamodb,
    config.offsetTable,
    config.pair,
    target.alias,
  );
  const selectTopic = topicSelector(config.topics);
  const topicSync = new TopicSyncService(sourceAdmin, targetAdmin, selectTopic, logger);
  const writers = new KafkaTransactionalWriterFactory(
    targetKafka,
    config.pair,
    source.alias,
    config.standbyCompression,
  );
  const stateStore = new DynamoDBStateStore(
    aws.dynamodb,
    config.stateTable,
    config.pair,
    config.primary.alias,
  );
  // The mirror writes only in the states that allow its direction: forward while mirroring or draining
  // for a failover, reverse only while a failback drains it.
  // Concurrent transactions share a control read, but never one that began before they asked.
  const controlNow = freshRead(() => stateStore.getControl());
  const guard =
    options.guard ??
    (async () => {
      const control = await controlNow();
      const allowed = direction === 'forward' ? forwardMirrorAllowed(control) : reverseMirrorAllowed(control);
      if (!allowed) {
        throw new StateError(
          'NOT_MIRRORING',
          `pair ${config.pair} is ${control.state} (epoch ${control.epoch}, ${control.activeCluster} active): the ${source.alias} -> ${target.alias} mirror does not write`,
          { details: { pair: config.pair, state: control.state, epoch: control.epoch } },
        );
      }
    });
  const engine = new MirrorEngine({
    sourceAlias: source.alias,
    targetAlias: target.alias,
    writers,
    targetReader,
    offsetMap,
    limits: {
      maxTransactionRecords: config.mirror.maxTransactionRecords,
      maxRequestBytes: config.mirror.maxRequestBytes,
    },
    logger,
    guard,
    sourceReader,
    counterpartMap,
    topicIds: async (from, to) => {
      const [sourceIds, targetIds] = await Promise.all([
        sourceAdmin.topicIds([from.topic]),
        targetAdmin.topicIds([to.topic]),
      ]);
      return { source: sourceIds.get(from.topic) ?? null, standby: targetIds.get(to.topic) ?? null };
    },
    ensureTopic: async (topic) => {
      const maxMessageBytes = await topicSync.ensureTopic(topic);
      if (maxMessageBytes === undefined) {
        throw new InputError(
          `topic ${topic} is not mirrored: it is internal or not selected by KDR_TOPICS=${config.topics}`,
        );
      }
      return maxMessageBytes;
    },
  });

  return {
    config,
    logger,
    direction,
    source,
    target,
    sourceKafka,
    targetKafka,
    aws,
    sourceReader,
    targetReader,
    sourceAdmin,
    targetAdmin,
    offsetMap,
    counterpartMap,
    selectTopic,
    topicSync,
    writers,
    engine,
    stateStore,
    objectStore: new S3ObjectStore(aws.s3, config.bucket),
    snapshotCatalog: new DynamoDBSnapshotCatalog(aws.dynamodb, config.stateTable, config.pair),
    selectGroup: topicSelector(config.groups),
    /** Stops (or starts) the Lambda event sources feeding the mirror; a no-op outside AWS. */
    mirrorSwitch: config.mirrorFunctionName
      ? new EventSourceSwitch(
          recordAwsCalls(new LambdaClient({ region: config.aws.region })),
          config.mirrorFunctionName,
        )
      : undefined,
    async close(): Promise<void> {
      await engine.close();
      await Promise.allSettled([
        sourceReader.close(),
        targetReader.close(),
        sourceAdmin.close(),
        targetAdmin.close(),
      ]);
      destroyAwsClients(aws);
    },
  };
}

export type Runtime = ReturnType<typeof createRuntime>;
