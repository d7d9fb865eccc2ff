import { afterAll, describe, expect, it } from 'vitest';
import { handler } from '../../../functions/mirror.ts';
import type { SourceRecord } from '../../../src/core/records.ts';
import { EventError, KdrError } from '../../../src/errors.ts';
import { type PartitionBatch, toKafkaEvent } from '../../../src/events/kafkaEvent.ts';
import {
  createTopics,
  eventually,
  type KcatRecord,
  kafkaFor,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../../helpers/lab.ts';
import { mirroredSourceOffsets } from '../../helpers/records.ts';

/**
 * The Lambda mirror handler, invoked as the Kafka event source would (at least once): redelivered and
 * overlapping events, events carrying aborted or not yet committed records, malformed events.
 */

const fromKcat = (r: KcatRecord): SourceRecord => ({
  offset: r.offset,
  timestamp: r.timestamp,
  timestampType: 'CreateTime',
  key: r.key,
  value: r.value,
  headers: r.headers.map(([key, value]) => ({ key, value })),
});

/** What the event source would deliver, read_uncommitted like a default Java consumer. */
async function deliverable(topic: string, partition = 0): Promise<SourceRecord[]> {
  return (await readWithKcat('primary', topic, { partition, isolation: 'read_uncommitted' })).map(fromKcat);
}

const event = (topic: string, records: SourceRecord[], partition = 0) =>
  toKafkaEvent([{ topic, partition, records } as PartitionBatch]);

async function standbyTopicExists(topic: string): Promise<boolean> {
  return withAdmin('standby', async (admin) => (await admin.listTopics()).includes(topic));
}

const producers: { disconnect(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(producers.map((p) => p.disconnect()));
});

describe('functions/mirror handler', () => {
  it('mirrors an event delivered twice, and overlapping events, once', async () => {
    const topic = uniqueName('lambda');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    const producer = kafkaFor('primary').producer({ idempotent: true });
    producers.push(producer);
    await producer.connect();
    await producer.send({
      topic,
      messages: Array.from({ length: 200 }, (_, i) => ({
        partition: i % 2,
        key: `k${i}`,
        value: `v${i}`,
        headerList: [{ key: 'h', value: i % 3 ? null : Buffer.from([i & 0xff]) }],
      })) as never,
    });
    const p0 = await deliverable(topic, 0);
    const p1 = await deliverable(topic, 1);
    const both = toKafkaEvent([
      { topic, partition: 0, records: p0.slice(0, 60) },
      { topic, partition: 1, records: p1.slice(0, 60) },
    ]);
    const first = await handler(both);
    expect(first.recordsMirrored).toBe(120);
    const again = await handler(both); // the event source delivered it again
    expect(again.recordsMirrored).toBe(0);
    const overlapping = await handler(event(topic, p0.slice(40, 100)));
    expect(overlapping.recordsMirrored).toBe(40);
    await handler(event(topic, p1.slice(30, 100), 1));
    expect(await mirroredSourceOffsets(topic, 0)).toEqual(p0.map((r) => r.offset));
    expect(await mirroredSourceOffsets(topic, 1)).toEqual(p1.map((r) => r.offset));
    const standby = await readWithKcat('standby', topic, { partition: 0 });
    expect(standby.map((r) => r.headers.filter(([k]) => !k.startsWith('kdr.')))).toEqual(
      p0.map((r) => r.headers.map((h) => [h.key, h.value])),
    );
  });

  it('never mirrors aborted records, and fails (for a retry) on records of an open transaction', async () => {
    const topic = uniqueName('lambda-txn');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const producer = kafkaFor('primary').producer({
      transactionalId: uniqueName('lambda-txn'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    producers.push(producer);
    await producer.connect();
    const send = async (values: string[], end: 'commit' | 'abort' | 'open') => {
      const t = await producer.transaction();
      await t.send({ topic, messages: values.map((value) => ({ value })) });
      if (end === 'commit') await t.commit();
      if (end === 'abort') await t.abort();
      return t;
    };
    await send(['c1', 'c2'], 'commit');
    await send(['a1', 'a2'], 'abort');
    await send(['c3'], 'commit');
    const settled = await deliverable(topic);
    expect(settled.map((r) => r.value!.toString())).toEqual(['c1', 'c2', 'a1', 'a2', 'c3']);
    await handler(event(topic, settled));
    expect((await readWithKcat('standby', topic)).map((r) => r.value!.toString())).toEqual([
      'c1',
      'c2',
      'c3',
    ]);

    const open = await send(['o1', 'o2'], 'open');
    const withOpen = await deliverable(topic);
    const failed = await handler(event(topic, withOpen.slice(-2))).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(KdrError);
    expect((failed as KdrError).retryable).toBe(true);
    expect((failed as Error).message).toContain('open transaction');
    await open.commit();
    // The commit markers reach the partition shortly after the commit returns; the event source retries.
    await eventually('the redelivered event is mirrored once the transaction is committed', () =>
      handler(event(topic, withOpen.slice(-2))).then(
        () => true,
        (e: unknown) => {
          if (!(e instanceof KdrError) || !e.retryable) throw e;
          return false;
        },
      ),
    );
    expect((await readWithKcat('standby', topic)).map((r) => r.value!.toString())).toEqual([
      'c1',
      'c2',
      'c3',
      'o1',
      'o2',
    ]);
  });

  it('rejects malformed events with a clear error and writes nothing', async () => {
    const topic = uniqueName('lambda-bad');
    const good = {
      topic,
      partition: 0,
      offset: 0,
      timestamp: 1,
      timestampType: 'CREATE_TIME',
      value: 'eA==',
      headers: [],
    };
    const bad: unknown[] = [
      null,
      {},
      { eventSource: 'aws:kafka', records: { [`${topic}-0`]: [{ ...good, partition: 'zero' }] } },
      { eventSource: 'aws:kafka', records: { [`${topic}-0`]: [{ ...good, value: 'not base64!' }] } },
      { eventSource: 'aws:kafka', records: { [`${topic}-1`]: [good] } },
      { eventSource: 'aws:kafka', records: { [`${topic}-0`]: [good, { ...good, topic: 'other' }] } },
    ];
    for (const payload of bad) {
      await expect(handler(payload)).rejects.toBeInstanceOf(EventError);
    }
    expect(await standbyTopicExists(topic)).toBe(false);
  });

  it('skips internal topics', async () => {
    const result = await handler(
      toKafkaEvent([
        {
          topic: '__consumer_offsets',
          partition: 0,
          records: [
            { offset: 0, timestamp: 0, timestampType: 'CreateTime', key: null, value: null, headers: [] },
          ],
        },
      ]),
    );
    expect(result.skippedTopics).toEqual(['__consumer_offsets']);
    expect(result.recordsMirrored).toBe(0);
  });
});
