import { afterAll, expect, it } from 'vitest';
import { KafkaAdmin } from '../../src/adapters/kafka/admin.ts';
import { config, createTopics, KAFKA_TOOLS, kafkaFor, kafkaTool, uniqueName } from '../helpers/lab.ts';

/** kdr's admin adapter against the lab, checked with Kafka's own tools. */

const admin = new KafkaAdmin(kafkaFor('primary'), 'primary');
afterAll(() => admin.close());

it('reports the topic ids that kafka-topics prints (its own Metadata v12 request)', async () => {
  const [a, b] = [uniqueName('ids-a'), uniqueName('ids-b')];
  await createTopics('primary', [
    { topic: a, numPartitions: 2 },
    { topic: b, numPartitions: 1 },
  ]);
  const described = await admin.describeTopics([a, b]);
  for (const topic of [a, b]) {
    const tool = await kafkaTool(KAFKA_TOOLS.topics, [
      '--bootstrap-server',
      config.primary.brokers[0]!,
      '--describe',
      '--topic',
      topic,
    ]);
    const printed = /TopicId:\s*(\S+)/.exec(tool.stdout)?.[1];
    expect(printed, tool.stdout).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(described.find((t) => t.name === topic)?.topicId).toBe(printed);
  }
});
