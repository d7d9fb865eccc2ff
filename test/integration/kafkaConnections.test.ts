import type { Socket } from 'node:net';
import { expect, it } from 'vitest';
import { KafkaPartitionReader } from '../../src/adapters/kafka/partitionReader.ts';
import { config, createTopics, kafkaFor, uniqueName } from '../helpers/lab.ts';
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
