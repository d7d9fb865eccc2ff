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

it("reads a group's committed offsets on the topics asked for only, as kafka-consumer-groups prints them", async () => {
  const base = uniqueName('gof');
  const [a, b, c] = [`${base}-a`, `${base}-b`, `${base}-c`];
  const group = `${base}-g`;
  await createTopics('primary', [
    { topic: a, numPartitions: 3 },
    { topic: b, numPartitions: 2 },
    { topic: c, numPartitions: 1 },
  ]);
  // Partition 1 of a is never committed; c is committed but not asked for.
  await admin.commitOffsets(group, [
    { topic: a, partition: 0, offset: 5 },
    { topic: a, partition: 2, offset: 7 },
    { topic: b, partition: 0, offset: 0 },
    { topic: b, partition: 1, offset: 3 },
    { topic: c, partition: 0, offset: 9 },
  ]);

  const read = await admin.committedOffsets(group, [a, b]);

  const sorted = (list: { topic: string; partition: number; offset: number }[]) =>
    [...list].sort((x, y) => x.topic.localeCompare(y.topic) || x.partition - y.partition);
  const tool = await kafkaTool(KAFKA_TOOLS.consumerGroups, [
    '--bootstrap-server',
    config.primary.brokers[0]!,
    '--describe',
    '--group',
    group,
  ]);
  // GROUP TOPIC PARTITION CURRENT-OFFSET ...
  const printed = tool.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols[0] === group && (cols[1] === a || cols[1] === b))
    .map((cols) => ({ topic: cols[1]!, partition: Number(cols[2]), offset: Number(cols[3]) }));
  expect(sorted(read)).toEqual(sorted(printed));
  expect(sorted(read)).toEqual([
    { topic: a, partition: 0, offset: 5 },
    { topic: a, partition: 2, offset: 7 },
    { topic: b, partition: 0, offset: 0 },
    { topic: b, partition: 1, offset: 3 },
  ]);
  expect(await admin.committedOffsets(group, [])).toEqual([]);
  expect(await admin.committedOffsets(`${base}-none`, [a])).toEqual([]);
});
