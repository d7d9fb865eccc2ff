import type { Socket } from 'node:net';
import { expect, it } from 'vitest';
import { KafkaPartitionReader } from '../../src/adapters/kafka/partitionReader.ts';
import { KafkaTransactionalWriterFactory } from '../../src/adapters/kafka/transactionalWriter.ts';
import type { OutgoingRecord } from '../../src/core/records.ts';
import { ProducerFencedError } from '../../src/errors.ts';
import {
  config,
  createTopics,
  eventually,
  kafkaFor,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import { fillPartitions } from '../helpers/records.ts';

/**
 * A closed client leaves no socket behind. A Lambda container keeps its process between invocations (a
 * leaked socket per invocation adds up), and `sls invoke local` waits for an empty event loop: one leaked
 * socket kept it running for ever.
 */

function openSocketsTo(broker: string): Socket[] {
  const port = Number(broker.split(':').at(-1));
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter(
    (h): h is Socket =>
      typeof h === 'object' &&
      h !== null &&
      (h as Socket).remotePort === port &&
      !(h as Socket).destroyed &&
      !(h as Socket).writableEnded,
  );
}

/**
 * A record for a writer, stamped now: a 1970 timestamp is past the retention, and the broker may delete
 * it before kcat reads it.
 */
const record = (sourceOffset: number, value: string): OutgoingRecord => ({
  sourceOffset,
  timestamp: Date.now(),
  key: null,
  value: Buffer.from(value),
  headers: [],
});

/** A writer factory of its own for the standby, under a pair of its own. */
const standbyWriters = () =>
  new KafkaTransactionalWriterFactory(kafkaFor('standby'), uniqueName('pair'), 'primary', 'none');

it('concurrent first reads of many partitions share one connection per broker, all closed by close()', async () => {
  const topic = uniqueName('conn-t');
  const partitions = [0, 1, 2, 3, 4, 5, 6, 7];
  await createTopics('primary', [{ topic, numPartitions: partitions.length }]);
  await fillPartitions(topic, partitions, 5, (_, i) => `r${i}`);
  const broker = config.primary.brokers[0]!;
  const before = openSocketsTo(broker).length;

  for (let round = 0; round < 5; round++) {
    const reader = new KafkaPartitionReader(kafkaFor('primary'), 'primary');
    // The first Fetch of each partition races for the broker's (not yet open) fetch connection.
    const fetched = await Promise.all(partitions.map((partition) => reader.fetch({ topic, partition }, 0)));
    expect(fetched.map((f) => f.records.length)).toEqual(partitions.map(() => 5));
    await reader.close();
    expect(openSocketsTo(broker).length, `round ${round}: sockets left open after close()`).toBe(before);
  }
});

it('transactional writers of many partitions share a few connections, fence each other as before, and close() leaves no socket', async () => {
  const topic = uniqueName('conn-w');
  const partitions = Array.from({ length: 40 }, (_, i) => i);
  await createTopics('standby', [{ topic, numPartitions: partitions.length }]);
  const broker = config.standby.brokers[0]!;
  const before = openSocketsTo(broker).length;
  const factory = standbyWriters();
  try {
    const writers = await Promise.all(partitions.map((partition) => factory.open({ topic, partition })));
    await Promise.all(
      writers.map((w, partition) =>
        w.write({ topic, partition }, [[record(0, `p${partition}-r0`), record(1, `p${partition}-r1`)]]),
      ),
    );
    // A producer cluster each was a socket per writer on this one-broker lab: 40 here. Now a cluster per
    // 16 writers of a topic (one socket each here, the seed broker being the leader).
    const open = openSocketsTo(broker).length - before;
    expect(open).toBeGreaterThan(0);
    expect(open).toBeLessThanOrEqual(3);

    // A writer opened again for partition 0 fences the first, even over the same connections.
    const again = await factory.open({ topic, partition: 0 });
    await expect(writers[0]!.write({ topic, partition: 0 }, [[record(2, 'p0-r2')]])).rejects.toBeInstanceOf(
      ProducerFencedError,
    );
    await again.write({ topic, partition: 0 }, [[record(3, 'p0-r3')]]);
  } finally {
    await factory.close();
  }
  expect(openSocketsTo(broker).length, 'sockets left open after close()').toBe(before);

  // kcat reads what each writer committed, and nothing of the fenced write (once the last markers are in).
  let read: Awaited<ReturnType<typeof readWithKcat>> = [];
  await eventually('kcat reads every committed record', async () => {
    read = await readWithKcat('standby', topic);
    return read.length >= 2 * partitions.length + 1;
  });
  const values = (p: number) => read.filter((r) => r.partition === p).map((r) => r.value!.toString());
  expect(values(0)).toEqual(['p0-r0', 'p0-r1', 'p0-r3']);
  for (const p of partitions.slice(1)) expect(values(p)).toEqual([`p${p}-r0`, `p${p}-r1`]);
});

it('a standby topic deleted under its writers stops only them: writers of other topics write, and new ones open', async () => {
  // More writers than a topic's clusters, so that clusters are shared (8 per topic).
  const partitions = Array.from({ length: 10 }, (_, i) => i);
  const [gone, kept, later] = [uniqueName('conn-gone'), uniqueName('conn-kept'), uniqueName('conn-later')];
  await createTopics(
    'standby',
    [gone, kept, later].map((topic) => ({ topic, numPartitions: partitions.length })),
  );
  const factory = standbyWriters();
  try {
    const targets = [gone, kept].flatMap((topic) => partitions.map((partition) => ({ topic, partition })));
    const writers = await Promise.all(targets.map((tp) => factory.open(tp)));
    await Promise.all(writers.map((w, i) => w.write(targets[i]!, [[record(0, 'r0')]])));
    // Deleted once its transactions' markers are in (markers bound for a deleted partition hold up the
    // coordinator's other transactions for a while: not what this test is about).
    await eventually('the deleted topic has its committed records', async () => {
      return (await readWithKcat('standby', gone)).length === partitions.length;
    });
    await withAdmin('standby', (admin) => admin.deleteTopics({ topics: [gone] }));
    // A topic new to a cluster makes it read metadata for every topic it has written.
    const fresh = await Promise.all(partitions.map((partition) => factory.open({ topic: later, partition })));
    await Promise.all(fresh.map((w, partition) => w.write({ topic: later, partition }, [[record(1, 'r1')]])));
    const keptWriters = writers.filter((_, i) => targets[i]!.topic === kept);
    await Promise.all(
      keptWriters.map((w, partition) => w.write({ topic: kept, partition }, [[record(2, 'r2')]])),
    );
  } finally {
    await factory.close();
  }
  await eventually('kcat reads the records of the topics that exist', async () => {
    const [a, b] = await Promise.all([readWithKcat('standby', kept), readWithKcat('standby', later)]);
    return a.length === 2 * partitions.length && b.length === partitions.length;
  });
});

it('writers of topics with a few partitions share one cluster per topic', async () => {
  const topics = Array.from({ length: 6 }, () => uniqueName('conn-small'));
  await createTopics(
    'standby',
    topics.map((topic) => ({ topic, numPartitions: 3 })),
  );
  const broker = config.standby.brokers[0]!;
  const before = openSocketsTo(broker).length;
  const factory = standbyWriters();
  try {
    const targets = topics.flatMap((topic) => [0, 1, 2].map((partition) => ({ topic, partition })));
    const writers = await Promise.all(targets.map((tp) => factory.open(tp)));
    await Promise.all(writers.map((w, i) => w.write(targets[i]!, [[record(0, 'r')]])));
    // 18 writers: one cluster (a socket here) per topic.
    expect(openSocketsTo(broker).length - before).toBe(topics.length);
  } finally {
    await factory.close();
  }
  expect(openSocketsTo(broker).length).toBe(before);
});
