import {
  GetItemCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Consumer, KafkaMessage } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { createAwsClients, destroyAwsClients } from '../../src/adapters/aws/clients.ts';
import {
  type ClusterName,
  config,
  createTopics,
  eventually,
  KAFKA_TOOLS,
  kafkaFor,
  kafkaTool,
  kcat,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';

/**
 * Proves the lab is real: kafkajs 2.2.4 against Kafka 4.3 (produce, consumer groups, transactions),
 * an independent client (kcat) and Kafka's own tools reading what kafkajs wrote, and moto serving S3 and
 * DynamoDB, conditions included.
 */

async function consume(
  cluster: ClusterName,
  topic: string,
  groupId: string,
  expected: number,
  options: { readUncommitted?: boolean } = {},
): Promise<KafkaMessage[]> {
  const consumer: Consumer = kafkaFor(cluster).consumer({
    groupId,
    readUncommitted: options.readUncommitted ?? false,
  });
  const received: KafkaMessage[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void received.push(message) });
    await eventually(
      `${expected} records consumed from ${topic} on ${cluster}`,
      () => received.length >= expected,
    );
  } finally {
    await consumer.disconnect();
  }
  return received;
}

describe.each(['primary', 'standby'] as const)('the %s cluster', (cluster) => {
  it('takes records from kafkajs that a consumer group, kcat and Kafka tools read back', async () => {
    const topic = uniqueName(`lab-${cluster}`);
    const groupId = uniqueName('lab-group');
    // Old timestamps are fine as long as time-based retention does not delete them.
    await createTopics(cluster, [
      { topic, numPartitions: 2, configEntries: [{ name: 'retention.ms', value: '-1' }] },
    ]);
    const producer = kafkaFor(cluster).producer({ idempotent: true });
    await producer.connect();
    await producer.send({
      topic,
      messages: [
        {
          partition: 0,
          key: 'k1',
          value: 'v1',
          timestamp: '1700000000000',
          headerList: [
            { key: 'h', value: Buffer.from('1') },
            { key: 'n', value: null },
            { key: 'h', value: Buffer.from('2') },
          ],
        } as never,
        { partition: 1, key: null, value: null, timestamp: '1700000000001' },
        { partition: 1, key: Buffer.from([0, 255]), value: Buffer.alloc(0), timestamp: '1700000000002' },
      ],
    });
    // One batch whose timestamps sort differently as strings and as numbers, with the epoch itself.
    await producer.send({
      topic,
      messages: ['1000000000000', '999999999999', '0'].map((timestamp) => ({
        partition: 0,
        value: timestamp,
        timestamp,
      })),
    });
    await producer.disconnect();

    const messages = await consume(cluster, topic, groupId, 6);
    expect(messages).toHaveLength(6);

    const byKcat = await readWithKcat(cluster, topic);
    expect(byKcat).toHaveLength(6);
    expect(
      byKcat.filter((r) => r.partition === 0 && r.offset > 0).map((r) => [r.value!.toString(), r.timestamp]),
    ).toEqual([
      ['1000000000000', 1000000000000],
      ['999999999999', 999999999999],
      ['0', 0],
    ]);
    const first = byKcat.find((r) => r.partition === 0)!;
    expect(first.key?.toString()).toBe('k1');
    expect(first.timestamp).toBe(1700000000000);
    expect(first.headers).toEqual([
      ['h', Buffer.from('1')],
      ['n', null],
      ['h', Buffer.from('2')],
    ]);
    const binary = byKcat.find((r) => r.offset === 1 && r.partition === 1)!;
    expect(binary.key).toEqual(Buffer.from([0, 255]));
    expect(binary.value).toEqual(Buffer.alloc(0));
    expect(byKcat.find((r) => r.offset === 0 && r.partition === 1)!.value).toBeNull();

    // The group committed on disconnect; Kafka's own group tool sees the same positions.
    const committed = await withAdmin(cluster, (admin) => admin.fetchOffsets({ groupId, topics: [topic] }));
    expect(committed[0]!.partitions.map((p) => [p.partition, p.offset]).sort()).toEqual([
      [0, '4'],
      [1, '2'],
    ]);
    const described = await kafkaTool(KAFKA_TOOLS.consumerGroups, [
      '--bootstrap-server',
      config[cluster].brokers[0]!,
      '--describe',
      '--group',
      groupId,
    ]);
    const rows = described.stdout
      .split('\n')
      .filter((line) => line.includes(topic))
      .map((line) => line.trim().split(/\s+/));
    expect(rows.map((r) => [Number(r[2]), Number(r[3])]).sort()).toEqual([
      [0, 4],
      [1, 2],
    ]);
  });

  it('runs kafkajs transactions: committed records are read, aborted ones are not', async () => {
    const topic = uniqueName(`lab-txn-${cluster}`);
    await createTopics(cluster, [{ topic, numPartitions: 1 }]);
    const producer = kafkaFor(cluster).producer({
      transactionalId: uniqueName('lab-txn'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    const commit = await producer.transaction();
    await commit.send({ topic, messages: [{ value: 'committed-1' }, { value: 'committed-2' }] });
    await commit.commit();
    const abort = await producer.transaction();
    await abort.send({ topic, messages: [{ value: 'aborted' }] });
    await abort.abort();
    const last = await producer.transaction();
    await last.send({ topic, messages: [{ value: 'committed-3' }] });
    await last.commit();
    await producer.disconnect();

    const committed = await consume(cluster, topic, uniqueName('lab-rc'), 3);
    expect(committed.map((m) => m.value!.toString())).toEqual(['committed-1', 'committed-2', 'committed-3']);
    const viaKcat = await readWithKcat(cluster, topic, { isolation: 'read_committed' });
    expect(viaKcat.map((r) => r.value!.toString())).toEqual(['committed-1', 'committed-2', 'committed-3']);
    const uncommitted = await readWithKcat(cluster, topic, { isolation: 'read_uncommitted' });
    expect(uncommitted.map((r) => r.value!.toString())).toContain('aborted');

    // 2 records + marker, 1 aborted + marker, 1 record + marker: the log end offset is 7.
    const offsets = await kafkaTool(KAFKA_TOOLS.getOffsets, [
      '--bootstrap-server',
      config[cluster].brokers[0]!,
      '--topic',
      topic,
    ]);
    expect(offsets.stdout.trim()).toBe(`${topic}:0:7`);
  });
});

describe('compression', () => {
  it.each(['gzip', 'snappy', 'lz4', 'zstd'] as const)(
    'reads %s batches written by librdkafka and writes batches kcat reads',
    async (codec) => {
      const topic = uniqueName(`lab-${codec}`);
      await createTopics('primary', [{ topic, numPartitions: 1 }]);
      const lines = Array.from({ length: 50 }, (_, i) => `librdkafka-${codec}-${i}-${'x'.repeat(i * 10)}`);
      await kcat(
        'primary',
        ['-P', '-t', topic, '-p', '0', '-X', `compression.codec=${codec}`, '-X', 'linger.ms=100'],
        {
          input: `${lines.join('\n')}\n`,
        },
      );
      const fromLibrdkafka = await consume('primary', topic, uniqueName('lab-codec'), 50);
      expect(fromLibrdkafka.map((m) => m.value!.toString())).toEqual(lines);

      const producer = kafkaFor('primary').producer();
      await producer.connect();
      const codes = { gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;
      const ours = Array.from({ length: 50 }, (_, i) => `kafkajs-${codec}-${i}-${'y'.repeat(i * 100)}`);
      await producer.send({ topic, compression: codes[codec], messages: ours.map((value) => ({ value })) });
      await producer.disconnect();
      const all = await readWithKcat('primary', topic);
      expect(all.slice(50).map((r) => r.value!.toString())).toEqual(ours);
    },
  );
});

describe('moto', () => {
  const clients = createAwsClients(config);
  afterAll(() => destroyAwsClients(clients));

  it('stores and returns S3 objects in the lab bucket', async () => {
    const key = `lab-test/${uniqueName('object')}`;
    const body = Buffer.from([0, 1, 2, 255]);
    await clients.s3.send(new PutObjectCommand({ Bucket: config.bucket, Key: key, Body: body }));
    const got = await clients.s3.send(new GetObjectCommand({ Bucket: config.bucket, Key: key }));
    expect(Buffer.from(await got.Body!.transformToByteArray())).toEqual(body);
  });

  it('rejects a DynamoDB transaction whose condition fails and writes nothing of it', async () => {
    const pk = uniqueName('lab-txn');
    const put = (sk: string) => ({
      Put: {
        TableName: config.stateTable,
        Item: { pk: { S: pk }, sk: { S: sk } },
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    });
    await clients.dynamodb.send(new TransactWriteItemsCommand({ TransactItems: [put('a')] }));
    const failing = clients.dynamodb.send(
      new TransactWriteItemsCommand({ TransactItems: [put('b'), put('a')] }),
    );
    await expect(failing).rejects.toBeInstanceOf(TransactionCanceledException);
    const error = (await failing.catch((e) => e)) as TransactionCanceledException;
    expect(error.CancellationReasons?.map((r) => r.Code)).toEqual(['None', 'ConditionalCheckFailed']);
    const b = await clients.dynamodb.send(
      new GetItemCommand({
        TableName: config.stateTable,
        Key: { pk: { S: pk }, sk: { S: 'b' } },
        ConsistentRead: true,
      }),
    );
    expect(b.Item).toBeUndefined();
  });
});
