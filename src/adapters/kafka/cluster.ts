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

export function createCluster(kafka: Kafka): KafkajsCluster {
  const symbol = Object.getOwnPropertySymbols(kafka).find(
    (s) => s.description === 'private:Kafka:createCluster',
  );
  if (!symbol)
    throw new KafkaError(
      'KAFKA_REQUEST_FAILED',
      'this kafkajs build has no cluster factory (expected 2.2.4)',
    );
  const create = (kafka as unknown as Record<symbol, (o: object) => KafkajsCluster>)[symbol]!;
  return create({ isolationLevel: READ_COMMITTED, metadataMaxAge: 60_000, allowAutoTopicCreation: false });
}
