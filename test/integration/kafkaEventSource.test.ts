import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type EventSourceOptions,
  type Invoker,
  initialMappingState,
  KafkaEventSource,
  MAX_PAYLOAD_BYTES,
  type MappingDefinition,
} from '../../infra/local/kafkaEventSource.ts';
import type { Invocation } from '../../infra/local/lambdaRuntime.ts';
import { KafkaAdmin } from '../../src/adapters/kafka/admin.ts';
import { KafkaPartitionReader } from '../../src/adapters/kafka/partitionReader.ts';
import type { EventRecord } from '../../src/events/kafkaEvent.ts';
import type { PartitionReader } from '../../src/ports/kafka.ts';
import { createTopics, eventually, kafkaFor, uniqueName, withAdmin } from '../helpers/lab.ts';

/**
 * The lab's Kafka event source against a real primary, with a function that records what it is given:
 * each behaviour copied from Lambda's event source mapping, one test each.
 */

interface Delivery {
  at: number;
  bytes: number;
  partition: number;
  offsets: number[];
}

/** A function that records its events; `answer` decides how each invocation ends. */
class RecordingFunction implements Invoker {
  readonly deliveries: Delivery[] = [];
  private readonly inFlight = new Map<number, number>();
  maxInFlightPerPartition = 0;
  maxInFlight = 0;

  constructor(
    private readonly answer: (d: Delivery, n: number) => Promise<Invocation['outcome']> = async () => 'ok',
  ) {}

  async invoke(_name: string, payload: unknown): Promise<Invocation> {
    const event = payload as { records: Record<string, EventRecord[]> };
    const records = Object.values(event.records).flat();
    const delivery = {
      at: Date.now(),
      bytes: JSON.stringify(payload).length,
      partition: records[0]!.partition,
      offsets: records.map((r) => r.offset),
    };
    this.deliveries.push(delivery);
    const busy = (this.inFlight.get(delivery.partition) ?? 0) + 1;
    this.inFlight.set(delivery.partition, busy);
    this.maxInFlightPerPartition = Math.max(this.maxInFlightPerPartition, busy);
    this.maxInFlight = Math.max(
      this.maxInFlight,
      [...this.inFlight.values()].reduce((a, b) => a + b, 0),
    );
    try {
      const outcome = await this.answer(delivery, this.deliveries.length);
      return outcome === 'ok'
        ? { outcome, payload: null, ms: 0 }
        : { outcome: 'error', errorType: 'Error', errorMessage: 'refused by the test', ms: 0 };
    } finally {
      this.inFlight.set(delivery.partition, this.inFlight.get(delivery.partition)! - 1);
    }
  }

  offsetsOf(partition: number): number[] {
    return this.deliveries.filter((d) => d.partition === partition).flatMap((d) => d.offsets);
  }
}

const sources: KafkaEventSource[] = [];
afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.close()));
});

function eventSource(
  topic: string,
  fn: Invoker,
  overrides: Partial<MappingDefinition> = {},
  options: EventSourceOptions = {},
) {
  const definition: MappingDefinition = {
    logicalId: 'TestMapping',
    functionArn: 'arn:aws:lambda:us-east-1:000000000000:function:test',
    kind: 'SelfManagedKafka',
    bootstrapServers: ['127.0.0.1:19092'],
    topic,
    batchSize: 100,
    batchingWindowSeconds: 0.5,
    startingPosition: 'TRIM_HORIZON',
    consumerGroupId: uniqueName('esm-group'),
    enabled: true,
    ...overrides,
  };
  const source = new KafkaEventSource(
    definition,
    initialMappingState(definition, randomUUID()),
    kafkaFor('primary'),
    'test',
    fn,
    options,
  );
  sources.push(source);
  return source;
}

async function produce(topic: string, partition: number, count: number, valueBytes = 10) {
  const producer = kafkaFor('primary').producer();
  await producer.connect();
  try {
    // Big records one to a request: a request holds at most the broker's message.max.bytes.
    const perSend = valueBytes > 100_000 ? 1 : 200;
    for (let start = 0; start < count; start += perSend)
      await producer.send({
        topic,
        messages: Array.from({ length: Math.min(perSend, count - start) }, (_, i) => ({
          partition,
          value: Buffer.alloc(valueBytes, start + i),
        })),
      });
  } finally {
    await producer.disconnect();
  }
}

async function committed(group: string, topic: string): Promise<Map<number, number>> {
  const admin = new KafkaAdmin(kafkaFor('primary'), 'primary');
  try {
    return new Map((await admin.committedOffsets(group, [topic])).map((o) => [o.partition, o.offset]));
  } finally {
    await admin.close();
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe('the lab Kafka event source', () => {
  it('sends at most BatchSize records per event, in order, and commits the end once delivered', async () => {
    const topic = uniqueName('esm-batch');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(topic, 0, 250);
    const fn = new RecordingFunction();
    const source = eventSource(topic, fn);
    source.start();
    await eventually('250 records delivered', () => fn.offsetsOf(0).length === 250);
    expect(fn.deliveries.map((d) => d.offsets.length)).toEqual([100, 100, 50]);
    expect(fn.offsetsOf(0)).toEqual(range(0, 250));
    await eventually(
      'the group committed the end',
      async () => (await committed(source.groupId, topic)).get(0) === 250,
    );
    expect(source.state.State).toBe('Enabled');
  });

  it('waits for the batching window from the first record before sending a small batch', async () => {
    const topic = uniqueName('esm-window');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const fn = new RecordingFunction();
    eventSource(topic, fn, { batchingWindowSeconds: 2 }).start();
    await eventually('the mapping is enabled', () => sources[0]!.state.State === 'Enabled');
    const produced = Date.now();
    await produce(topic, 0, 5);
    await eventually('5 records delivered', () => fn.offsetsOf(0).length === 5, 15_000);
    // One event with all five, not before the window ran out.
    expect(fn.deliveries).toHaveLength(1);
    expect(fn.deliveries[0]!.at - produced).toBeGreaterThanOrEqual(1900);
  });

  it('keeps each event under the 6 MB payload limit', async () => {
    const topic = uniqueName('esm-6mb');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    // 900 KB each: 1.2 MB in base64, so five to an event (6 MiB) and no more.
    await produce(topic, 0, 10, 900_000);
    const fn = new RecordingFunction();
    eventSource(topic, fn).start();
    await eventually('10 records delivered', () => fn.offsetsOf(0).length === 10, 30_000);
    expect(fn.offsetsOf(0)).toEqual(range(0, 10));
    for (const d of fn.deliveries) expect(d.bytes).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    // Full: one more record would not have fitted.
    for (const d of fn.deliveries.slice(0, -1))
      expect(d.bytes + 1_200_000).toBeGreaterThan(MAX_PAYLOAD_BYTES);
    expect(fn.deliveries.map((d) => d.offsets.length)).toEqual([5, 5]);
  });

  it('has one invocation in flight per partition, partitions side by side', async () => {
    const topic = uniqueName('esm-inflight');
    await createTopics('primary', [{ topic, numPartitions: 3 }]);
    for (const p of [0, 1, 2]) await produce(topic, p, 300);
    const fn = new RecordingFunction(async () => {
      await sleep(150);
      return 'ok';
    });
    eventSource(topic, fn, { batchSize: 50 }).start();
    await eventually(
      '900 records delivered',
      () => fn.deliveries.flatMap((d) => d.offsets).length === 900,
      60_000,
    );
    expect(fn.maxInFlightPerPartition).toBe(1);
    expect(fn.maxInFlight).toBeGreaterThan(1);
    for (const p of [0, 1, 2]) expect(fn.offsetsOf(p)).toEqual(range(0, 300));
  });

  it('sends a failed batch again whole, and commits nothing until it succeeds', async () => {
    const topic = uniqueName('esm-retry');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(topic, 0, 30);
    let commitsWhileFailing: Map<number, number> | undefined;
    const group = uniqueName('esm-group');
    const fn = new RecordingFunction(async (_d, n) => {
      if (n <= 2) {
        commitsWhileFailing = await committed(group, topic);
        return 'error';
      }
      return 'ok';
    });
    const source = eventSource(topic, fn, { consumerGroupId: group });
    source.start();
    await eventually('the batch succeeded', () => fn.deliveries.length === 3, 30_000);
    // The same 30 records three times: attempt, retry after 1 s, retry after 2 s.
    expect(fn.deliveries.map((d) => d.offsets)).toEqual([range(0, 30), range(0, 30), range(0, 30)]);
    expect(fn.deliveries[2]!.at - fn.deliveries[0]!.at).toBeGreaterThanOrEqual(2900);
    expect(commitsWhileFailing?.get(0)).toBeUndefined();
    expect(source.stats).toMatchObject({ failures: 2, records: 30 });
    await eventually(
      'committed after success',
      async () => (await committed(source.groupId, topic)).get(0) === 30,
    );
  });

  it('stops when disabled and goes on from the committed offsets when enabled again', async () => {
    const topic = uniqueName('esm-switch');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(topic, 0, 40);
    const fn = new RecordingFunction();
    const source = eventSource(topic, fn);
    source.start();
    await eventually('40 records delivered', () => fn.offsetsOf(0).length === 40);
    await eventually('committed', async () => (await committed(source.groupId, topic)).get(0) === 40);
    source.setEnabled(false);
    expect(source.state.State).toBe('Disabling');
    await eventually('disabled', () => source.state.State === 'Disabled', 10_000);
    await produce(topic, 0, 25);
    await sleep(2000);
    expect(fn.offsetsOf(0)).toHaveLength(40);
    source.setEnabled(true);
    await eventually('the 25 new records delivered', () => fn.offsetsOf(0).length === 65, 30_000);
    expect(fn.offsetsOf(0)).toEqual(range(0, 65));
  });

  it('starts at StartingPosition only without committed offsets: LATEST skips what is there', async () => {
    const topic = uniqueName('esm-latest');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(topic, 0, 20);
    const fn = new RecordingFunction();
    const source = eventSource(topic, fn, { startingPosition: 'LATEST' });
    source.start();
    await eventually('the mapping is enabled', () => source.state.State === 'Enabled');
    await produce(topic, 0, 5);
    await eventually('5 records delivered', () => fn.offsetsOf(0).length === 5, 15_000);
    expect(fn.offsetsOf(0)).toEqual(range(20, 25));
    await eventually('committed', async () => (await committed(source.groupId, topic)).get(0) === 25);

    // A second mapping on the same group (as after a redeploy) starts from the group's offset, not at
    // StartingPosition.
    await source.close();
    await produce(topic, 0, 3);
    const again = new RecordingFunction();
    eventSource(topic, again, { startingPosition: 'TRIM_HORIZON', consumerGroupId: source.groupId }).start();
    await eventually('3 records delivered', () => again.offsetsOf(0).length === 3, 15_000);
    expect(again.offsetsOf(0)).toEqual(range(25, 28));
  });

  it('disabled and enabled again while a batch is in flight: every partition goes on, one batch each at a time', async () => {
    const topic = uniqueName('esm-flip');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await produce(topic, 0, 10);
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const fn = new RecordingFunction(async (d) => {
      if (d.partition === 0 && d.offsets[0] === 0) await held;
      return 'ok';
    });
    const source = eventSource(topic, fn);
    source.start();
    await eventually('partition 0 in flight', () => fn.deliveries.length === 1, 15_000);
    source.setEnabled(false);
    await sleep(1200);
    source.setEnabled(true);
    release();
    await produce(topic, 1, 5);
    await eventually('partition 1 delivered after the flip', () => fn.offsetsOf(1).length === 5, 20_000);
    await eventually('enabled', () => source.state.State === 'Enabled', 10_000);
    expect(fn.offsetsOf(0)).toEqual(range(0, 10));
    expect(fn.maxInFlightPerPartition).toBe(1);
  });

  it('a failed read does not end the mapping: it reports the problem and goes on from the last commit', async () => {
    const topic = uniqueName('esm-fault');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await produce(topic, 0, 10);
    await produce(topic, 1, 10);
    const real = new KafkaPartitionReader(kafkaFor('primary'), 'primary');
    let failed = 0;
    // The first read of partition 1 fails as a broker restart would make it fail.
    const reader: PartitionReader = {
      fetch: (tp, offset, options) => {
        if (tp.partition === 1 && failed++ === 0) return Promise.reject(new Error('broker went away'));
        return real.fetch(tp, offset, options);
      },
      readRange: (tp, from, to) => real.readRange(tp, from, to),
      offsets: (t, partitions) => real.offsets(t, partitions),
      close: () => real.close(),
    };
    const fn = new RecordingFunction(async () => {
      await sleep(100);
      return 'ok';
    });
    const source = eventSource(topic, fn, {}, { reader });
    source.start();
    await eventually(
      'both partitions delivered',
      () => fn.offsetsOf(0).length === 10 && fn.offsetsOf(1).length === 10,
      20_000,
    );
    expect(failed).toBeGreaterThan(1);
    expect(source.state.State).toBe('Enabled');
    expect(fn.maxInFlightPerPartition).toBe(1);
    expect(fn.offsetsOf(1)).toEqual(range(0, 10));
  });

  it('delivers committed transactional records only, and commits past the markers and aborted records', async () => {
    const topic = uniqueName('esm-txn');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const producer = kafkaFor('primary').producer({
      transactionalId: uniqueName('esm-txn-id'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    try {
      for (const [tag, commit] of [
        ['a', true],
        ['b', false],
        ['c', true],
      ] as const) {
        const txn = await producer.transaction();
        await txn.send({ topic, messages: [0, 1, 2].map((i) => ({ partition: 0, value: `${tag}${i}` })) });
        if (commit) await txn.commit();
        else await txn.abort();
      }
    } finally {
      await producer.disconnect();
    }
    const fn = new RecordingFunction();
    const source = eventSource(topic, fn);
    source.start();
    // Offsets 0-2 (a), 3 marker, 4-6 (b, aborted), 7 marker, 8-10 (c), 11 marker: end 12.
    await eventually(
      'the group committed past the last marker',
      async () => (await committed(source.groupId, topic)).get(0) === 12,
      20_000,
    );
    expect(fn.offsetsOf(0)).toEqual([0, 1, 2, 8, 9, 10]);
  });

  it('commits to the mapping UUID without a ConsumerGroupId; a committed offset below the log start starts at StartingPosition', async () => {
    const topic = uniqueName('esm-uuid');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await produce(topic, 0, 10);
    const fn = new RecordingFunction();
    const source = eventSource(topic, fn, { consumerGroupId: undefined });
    expect(source.groupId).toBe(source.state.UUID);
    source.start();
    await eventually(
      'committed to the UUID group',
      async () => (await committed(source.state.UUID, topic)).get(0) === 10,
    );
    await source.close();

    // The group is at 10; DeleteRecords moves the log start to 15, past it.
    await produce(topic, 0, 10);
    await withAdmin('primary', async (admin) => {
      // kafkajs's deleteTopicRecords finds the leaders in metadata it does not load itself.
      await admin.fetchTopicMetadata({ topics: [topic] });
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '15' }] });
    });
    const again = new RecordingFunction();
    eventSource(topic, again, { consumerGroupId: source.state.UUID }).start();
    await eventually('the rest delivered', () => again.offsetsOf(0).length === 5, 15_000);
    expect(again.offsetsOf(0)).toEqual(range(15, 20));
  });
});
