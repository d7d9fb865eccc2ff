import { QueryCommand } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import fc from 'fast-check';
import { afterAll, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { toKafkaEvent } from '../../../src/events/kafkaEvent.ts';
import { silentLogger } from '../../../src/logger.ts';
import { createRuntime } from '../../../src/runtime.ts';
import { uniqueName, withAdmin } from '../../helpers/lab.ts';

/**
 * Hundreds of malformed payloads, generated with fast-check, thrown at every invoked handler: each is
 * rejected with a clear EventError naming where the payload is wrong, and nothing is written anywhere
 * (no topic, no object, no item of the pair).
 */

const pair = uniqueName('malformed-pair');
const prefix = uniqueName('malformed');
const keys = ['KDR_PAIR', 'KDR_TOPICS', 'KDR_SNAPSHOT_PREFIX'];
const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
Object.assign(process.env, {
  KDR_PAIR: pair,
  KDR_TOPICS: `${prefix}-.*`,
  KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
});
const rt = createRuntime(loadConfig(), silentLogger);
afterAll(async () => {
  await rt.close();
  for (const key of keys) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
});

const notJson = fc.string({ minLength: 1 }).filter((s) => {
  try {
    JSON.parse(s);
    return false;
  } catch {
    return true;
  }
});
const notAnObject = fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.integer(), { maxLength: 3 }), notJson);
const unknownKey = fc
  .string({ minLength: 1, maxLength: 12 })
  .filter((k) => !['mode', 'timeoutSeconds', 'pair', 'cluster', '__proto__'].includes(k) && /^\w+$/.test(k));

/** Invalid values per field of each invoked function's payload. */
const badFields: Record<string, Record<string, fc.Arbitrary<unknown>>> = {
  failover: {
    mode: fc.oneof(
      fc.string().filter((s) => s !== 'planned' && s !== 'unplanned'),
      fc.integer(),
      fc.constant(null),
    ),
    timeoutSeconds: fc.oneof(
      fc.integer({ max: 0 }),
      fc.integer({ min: 3601 }),
      fc.string(),
      fc.constant(null),
    ),
    pair: fc.oneof(
      fc.constant('other-pair'),
      fc.string().filter((s) => !/^[A-Za-z0-9._-]{1,64}$/.test(s)),
    ),
  },
  failback: {
    timeoutSeconds: fc.oneof(fc.integer({ max: 0 }), fc.double({ min: 3601, noNaN: true }), fc.boolean()),
    pair: fc.constant('another-pair'),
  },
  restore: {
    snapshotId: fc.oneof(
      fc.string().filter((s) => !/^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+$/.test(s)),
      fc.integer(),
    ),
    mode: fc.string().filter((s) => !['new', 'append', 'replace'].includes(s)),
    from: fc.string().filter((s) => s !== 'primary' && s !== 'standby'),
    rename: fc.oneof(fc.string(), fc.array(fc.integer(), { minLength: 1, maxLength: 3 })),
    yes: fc.oneof(fc.string(), fc.integer()),
    at: fc.string().filter((s) => Number.isNaN(Date.parse(s)) || !/^\d{4}-\d{2}-\d{2}T/.test(s)),
  },
  status: { pair: fc.constant('not-this-pair') },
  snapshot: { cluster: fc.string().filter((s) => s !== 'primary' && s !== 'standby') },
};
const validBase: Record<string, Record<string, unknown>> = {
  failover: { mode: 'planned', timeoutSeconds: 5 },
  failback: { timeoutSeconds: 5 },
  restore: { snapshotId: '20261125T000000Z-abcd', target: 'standby' },
  status: {},
  snapshot: {},
};

interface KafkaEventJson {
  eventSource: string;
  records: Record<string, Record<string, unknown>[]>;
}

/** The event with its first record replaced. */
function withFirst(e: KafkaEventJson, change: (r: Record<string, unknown>) => unknown) {
  const [key, list] = Object.entries(e.records)[0]!;
  return { ...e, records: { [key]: [change(list[0]!)] } };
}

const payload = fc.oneof(
  // One field made invalid.
  fc.constantFrom(...Object.keys(badFields)).chain((name) =>
    fc.constantFrom(...Object.keys(badFields[name]!)).chain((field) =>
      badFields[name]![field]!.map((value) => ({
        name,
        payload: { ...validBase[name], [field]: value } as unknown,
      })),
    ),
  ),
  // A field nobody knows (payloads are strict), or no object at all. The snapshot function runs from a
  // schedule, whose event it ignores: only its "cluster" field is checked.
  fc.constantFrom('failover', 'failback', 'restore', 'status').chain((name) =>
    fc.oneof(
      unknownKey.map((key) => ({ name, payload: { ...validBase[name], [key]: 1 } as unknown })),
      notAnObject.map((p) => ({ name, payload: p as unknown })),
    ),
  ),
  // Kafka events for the mirror function: a valid event with one part broken.
  fc
    .constantFrom<(e: KafkaEventJson) => unknown>(
      (e) => ({ ...e, eventSource: 'aws:sqs' }),
      (e) => ({ ...e, records: [] }),
      (e) => ({ ...e, records: { 'x-0': 'nope' } }),
      (e) => withFirst(e, (r) => ({ ...r, offset: -1 })),
      (e) => withFirst(e, (r) => ({ ...r, value: '%%% not base64' })),
      (e) => withFirst(e, (r) => ({ ...r, headers: [{ h: ['x'] }] })),
      (e) => withFirst(e, (r) => ({ ...r, timestampType: 'WALL_CLOCK' })),
      (e) => ({ ...e, records: { 'other-7': Object.values(e.records)[0] } }),
    )
    .chain((mutate) =>
      fc.integer({ min: 0, max: 5 }).map((partition) => {
        const event = toKafkaEvent([
          {
            topic: `${prefix}-t`,
            partition,
            records: [
              { offset: 0, timestamp: 1, timestampType: 'CreateTime', key: null, value: null, headers: [] },
            ],
          },
        ]) as unknown as KafkaEventJson;
        return { name: 'mirror', payload: mutate(event) as unknown };
      }),
    ),
);

it('rejects 300 malformed payloads across the handlers with a clear error, writing nothing', {
  timeout: 300_000,
}, async () => {
  const handlers: Record<string, (event: unknown) => Promise<unknown>> = {};
  for (const name of ['failover', 'failback', 'restore', 'status', 'snapshot', 'mirror'])
    handlers[name] = (await import(`../../../functions/${name}.ts`)).handler;
  const topicsBefore = (await withAdmin('primary', (a) => a.listTopics())).concat(
    await withAdmin('standby', (a) => a.listTopics()),
  );
  const seen = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(payload, async ({ name, payload: event }) => {
      seen.set(name, (seen.get(name) ?? 0) + 1);
      const error = await handlers[name]!(event).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string },
      );
      expect(error, `${name} accepted ${JSON.stringify(event)}`).toBeDefined();
      expect(error!.name, `${name}: ${error!.message}`).toBe('EventError');
      expect(error!.message).toMatch(
        /^malformed (failover|failback|restore|status|snapshot) request|^malformed Kafka event|request is for pair/,
      );
    }),
    { numRuns: 300, seed: Number(process.env.KDR_TEST_SEED ?? 42) },
  );
  expect([...seen.keys()].sort()).toEqual([
    'failback',
    'failover',
    'mirror',
    'restore',
    'snapshot',
    'status',
  ]);
  // Nothing was written: no topic on either cluster, no item of the pair, no object under its prefix.
  const topicsAfter = (await withAdmin('primary', (a) => a.listTopics())).concat(
    await withAdmin('standby', (a) => a.listTopics()),
  );
  expect(topicsAfter.filter((t) => t.startsWith(prefix) && !topicsBefore.includes(t))).toEqual([]);
  for (const pk of [
    `pair#${pair}`,
    `pair#${pair}#checkpoints`,
    `pair#${pair}#restores`,
    `pair#${pair}#snapshots`,
  ]) {
    const items = await rt.aws.dynamodb.send(
      new QueryCommand({
        TableName: rt.config.stateTable,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: pk } },
      }),
    );
    expect(items.Count, pk).toBe(0);
  }
  const objects = await rt.aws.s3.send(
    new ListObjectsV2Command({ Bucket: rt.config.bucket, Prefix: `test/${prefix}` }),
  );
  expect(objects.KeyCount ?? 0).toBe(0);
});
