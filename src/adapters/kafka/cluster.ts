import type { Kafka } from 'kafkajs';
import { KafkaError } from '../../errors.ts';

/**
 * kafkajs's cluster layer (brokers, metadata, coordinators), which its Kafka object keeps private. kdr
 * needs it where kafkajs offers only a consumer group: reading partitions by offset, and committing a
 * group's offsets without joining the group (kafkajs's admin.setOffsets joins it with a consumer and
 * waits for a fetch: 5 s per call).
 */

export interface KafkajsBroker {
  fetch(request: unknown): Promise<{ responses: { topicName: string; partitions: unknown[] }[] }>;
  listOffsets(
    request: unknown,
  ): Promise<{ responses: { topic: string; partitions: { partition: number; offset: string }[] }[] }>;
  offsetCommit(request: {
    groupId: string;
    groupGenerationId: number;
    memberId: string;
    topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
  }): Promise<unknown>;
}

export interface KafkajsCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  refreshMetadata(): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(args: { nodeId: string }): Promise<KafkajsBroker>;
  findTopicPartitionMetadata(topic: string): { partitionId: number }[];
  findGroupCoordinator(args: { groupId: string }): Promise<KafkajsBroker>;
}

const READ_COMMITTED = 1;

/** One of the Kafka object's private members (its cluster factory, logger, retry options). */
function kafkaPrivate<T>(kafka: Kafka, name: string): T {
  const symbol = Object.getOwnPropertySymbols(kafka).find((s) => s.description === `private:Kafka:${name}`);
  if (!symbol)
    throw new KafkaError(
      'KAFKA_REQUEST_FAILED',
      `this kafkajs build has no private ${name} (expected 2.2.4)`,
    );
  return (kafka as unknown as Record<symbol, T>)[symbol]!;
}

export function createCluster(kafka: Kafka): KafkajsCluster {
  const create = kafkaPrivate<(o: object) => KafkajsCluster>(kafka, 'createCluster');
  return create({ isolationLevel: READ_COMMITTED, metadataMaxAge: 60_000, allowAutoTopicCreation: false });
}

/**
 * A cluster for producers, made as `kafka.producer()` makes its own (same metadata age, no topic
 * creation), with no limit on requests in flight per connection: producers sharing it each send one
 * request at a time. `logger` and `retry` are what `kafka.producer()` gives the producers it creates.
 */
export function createProducerCluster(kafka: Kafka): {
  cluster: KafkajsCluster;
  logger: unknown;
  retry: object;
} {
  const create = kafkaPrivate<(o: object) => KafkajsCluster>(kafka, 'createCluster');
  return {
    cluster: create({ metadataMaxAge: 300_000, allowAutoTopicCreation: false }),
    logger: kafkaPrivate<unknown>(kafka, 'logger'),
    retry: kafkaPrivate<object | undefined>(kafka, 'clusterRetry') ?? {},
  };
}
