import { createAwsClients, destroyAwsClients } from './adapters/aws/clients.ts';
import { DynamoDBOffsetMapStore } from './adapters/dynamodb/offsetMapStore.ts';
import { createKafka } from './adapters/kafka/client.ts';
import { KafkaPartitionReader } from './adapters/kafka/partitionReader.ts';
import { KafkaTopicAdmin } from './adapters/kafka/topicAdmin.ts';
import { KafkaTransactionalWriterFactory } from './adapters/kafka/transactionalWriter.ts';
import type { KdrConfig } from './config.ts';
import type { TopicPartition } from './core/records.ts';
import { topicSelector } from './core/topicSync.ts';
import { InputError } from './errors.ts';
import type { Logger } from './logger.ts';
import { MirrorEngine } from './services/mirror.ts';
import { TopicSyncService } from './services/topicSync.ts';

/**
 * The composition root: every adapter built from the configuration, once per process (a Lambda container
 * keeps it between invocations). Nothing connects until first used.
 */
export function createRuntime(
  config: KdrConfig,
  logger: Logger,
  options: { guard?: (tp: TopicPartition) => Promise<void> } = {},
) {
  const sourceKafka = createKafka(config.primary, `kdr-${config.pair}-source`, logger);
  const standbyKafka = createKafka(config.standby, `kdr-${config.pair}-standby`, logger);
  const aws = createAwsClients(config);
  const sourceReader = new KafkaPartitionReader(sourceKafka, config.primary.alias);
  const standbyReader = new KafkaPartitionReader(standbyKafka, config.standby.alias);
  const sourceAdmin = new KafkaTopicAdmin(sourceKafka, config.primary.alias);
  const standbyAdmin = new KafkaTopicAdmin(standbyKafka, config.standby.alias);
  const offsetMap = new DynamoDBOffsetMapStore(aws.dynamodb, config.offsetTable, config.pair);
  const selectTopic = topicSelector(config.topics);
  const topicSync = new TopicSyncService(sourceAdmin, standbyAdmin, selectTopic, logger);
  const writers = new KafkaTransactionalWriterFactory(standbyKafka, config.pair, config.standbyCompression);
  const engine = new MirrorEngine({
    sourceAlias: config.primary.alias,
    targetAlias: config.standby.alias,
    writers,
    standbyReader,
    offsetMap,
    limits: {
      maxTransactionRecords: config.mirror.maxTransactionRecords,
      maxRequestBytes: config.mirror.maxRequestBytes,
    },
    logger,
    ...(options.guard ? { guard: options.guard } : {}),
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
    sourceKafka,
    standbyKafka,
    aws,
    sourceReader,
    standbyReader,
    sourceAdmin,
    standbyAdmin,
    offsetMap,
    selectTopic,
    topicSync,
    engine,
    async close(): Promise<void> {
      await engine.close();
      await Promise.allSettled([
        sourceReader.close(),
        standbyReader.close(),
        sourceAdmin.close(),
        standbyAdmin.close(),
      ]);
      destroyAwsClients(aws);
    },
  };
}

export type Runtime = ReturnType<typeof createRuntime>;
