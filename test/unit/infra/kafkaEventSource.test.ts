import { describe, expect, it } from 'vitest';
import type { Resource, Stack } from '../../../infra/aws/stackIam.ts';
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_BATCHING_WINDOW_SECONDS,
  kafkaEvent,
  type MappingDefinition,
  mappingDefinitions,
  retryDelayMs,
} from '../../../infra/local/kafkaEventSource.ts';
import type { SourceRecord } from '../../../src/core/records.ts';
import { LabError } from '../../../src/errors.ts';
import { eventRecord, parseKafkaEvent } from '../../../src/events/kafkaEvent.ts';

const record = (over: Partial<SourceRecord> = {}): SourceRecord => ({
  offset: 7,
  timestamp: 1_764_000_000_000,
  timestampType: 'CreateTime',
  key: Buffer.from('k1'),
  value: Buffer.from('v1'),
  headers: [],
  ...over,
});

const selfManaged: MappingDefinition = {
  logicalId: 'MirrorEventSourceMappingKafkaOrders',
  functionArn: 'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-mirror',
  kind: 'SelfManagedKafka',
  bootstrapServers: ['127.0.0.1:19092', '127.0.0.1:19093'],
  topic: 'orders',
  batchSize: 1000,
  batchingWindowSeconds: 1,
  startingPosition: 'TRIM_HORIZON',
  consumerGroupId: 'g-orders',
  enabled: true,
};

const msk: MappingDefinition = {
  ...selfManaged,
  kind: 'aws:kafka',
  eventSourceArn: 'arn:aws:kafka:us-east-1:000000000000:cluster/primary/abc',
  bootstrapServers: [],
};

const stackOf = (resources: Record<string, Resource>): Stack => ({
  accountId: '000000000000',
  region: 'us-east-1',
  resources,
});

const mappingProperties = () => ({
  FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-mirror',
  StartingPosition: 'TRIM_HORIZON',
  SelfManagedEventSource: { Endpoints: { KafkaBootstrapServers: ['127.0.0.1:19092'] } },
  Topics: ['orders'],
  BatchSize: 1000,
  MaximumBatchingWindowInSeconds: 1,
  SelfManagedKafkaEventSourceConfig: { ConsumerGroupId: 'g-orders' },
});

const mapping = (Properties: Record<string, unknown>): Resource => ({
  Type: 'AWS::Lambda::EventSourceMapping',
  Properties,
});

describe('eventRecord', () => {
  it('carries key and value in base64 with topic, partition, offset and timestamp', () => {
    const r = eventRecord(
      'orders',
      3,
      record({ key: Buffer.from('key-1'), value: Buffer.from([0, 1, 254]) }),
    );
    expect(r).toEqual({
      topic: 'orders',
      partition: 3,
      offset: 7,
      timestamp: 1_764_000_000_000,
      timestampType: 'CREATE_TIME',
      key: Buffer.from('key-1').toString('base64'),
      value: 'AAH+',
      headers: [],
    });
  });

  it('leaves out a null key and a null value (absent fields, not null)', () => {
    const r = eventRecord('orders', 0, record({ key: null, value: null }));
    expect('key' in r).toBe(false);
    expect('value' in r).toBe(false);
    expect(JSON.parse(JSON.stringify(r))).not.toHaveProperty('key');
    expect(JSON.parse(JSON.stringify(r))).not.toHaveProperty('value');
  });

  it('keeps an empty key and value (an empty string, not absent)', () => {
    const r = eventRecord('orders', 0, record({ key: Buffer.alloc(0), value: Buffer.alloc(0) }));
    expect(r.key).toBe('');
    expect(r.value).toBe('');
  });

  it('gives header values as Java signed bytes', () => {
    const r = eventRecord(
      'orders',
      0,
      record({ headers: [{ key: 'h', value: Buffer.from([0xff, 0x80, 0x01]) }] }),
    );
    expect(r.headers).toEqual([{ h: [-1, -128, 1] }]);
  });

  it('reads a header value that is a view into a larger buffer from its own offset', () => {
    const view = Buffer.from([9, 9, 0xff, 0x80, 0x01, 9]).subarray(2, 5);
    const r = eventRecord('orders', 0, record({ headers: [{ key: 'h', value: view }] }));
    expect(r.headers).toEqual([{ h: [-1, -128, 1] }]);
  });

  it('keeps a null header value null, header order and duplicate keys', () => {
    const r = eventRecord(
      'orders',
      0,
      record({
        headers: [
          { key: 'b', value: Buffer.from('1') },
          { key: 'a', value: null },
          { key: 'b', value: Buffer.from('2') },
          { key: 'a', value: Buffer.alloc(0) },
        ],
      }),
    );
    expect(r.headers).toEqual([{ b: [0x31] }, { a: null }, { b: [0x32] }, { a: [] }]);
  });

  it('maps the timestamp type to the event names', () => {
    expect(eventRecord('t', 0, record({ timestampType: 'LogAppendTime' })).timestampType).toBe(
      'LOG_APPEND_TIME',
    );
    expect(eventRecord('t', 0, record({ timestampType: 'CreateTime' })).timestampType).toBe('CREATE_TIME');
  });
});

describe('kafkaEvent', () => {
  it('is a self-managed event without eventSourceArn, bootstrap servers joined with commas', () => {
    const records = [
      eventRecord('orders', 2, record({ offset: 5 })),
      eventRecord('orders', 2, record({ offset: 6 })),
    ];
    const event = kafkaEvent(selfManaged, records);
    expect(event.eventSource).toBe('SelfManagedKafka');
    expect('eventSourceArn' in event).toBe(false);
    expect(event.bootstrapServers).toBe('127.0.0.1:19092,127.0.0.1:19093');
    expect(Object.keys(event.records)).toEqual(['orders-2']);
    expect(event.records['orders-2']).toBe(records);
  });

  it('carries the eventSourceArn of an MSK mapping', () => {
    const event = kafkaEvent(msk, [eventRecord('orders', 0, record())]);
    expect(event.eventSource).toBe('aws:kafka');
    expect(event).toHaveProperty(
      'eventSourceArn',
      'arn:aws:kafka:us-east-1:000000000000:cluster/primary/abc',
    );
    expect(event.bootstrapServers).toBe('');
    expect(Object.keys(event.records)).toEqual(['orders-0']);
  });

  it('has no records for an empty batch', () => {
    expect(kafkaEvent(selfManaged, []).records).toEqual({});
  });

  it("is read back by kdr's own event parser: keys, values, header bytes, offsets, timestamps", () => {
    const source: SourceRecord[] = [
      record({
        offset: 100,
        timestamp: 1_700_000_000_001,
        timestampType: 'LogAppendTime',
        key: Buffer.from([0xde, 0xad, 0xbe, 0xef]),
        value: Buffer.from('{"a":1}'),
        headers: [
          { key: 'bin', value: Buffer.from([0xff, 0x80, 0x01, 0x00, 0x7f]) },
          { key: 'nil', value: null },
          { key: 'bin', value: Buffer.from('again') },
        ],
      }),
      record({ offset: 101, timestamp: 1_700_000_000_002, key: null, value: null, headers: [] }),
      record({ offset: 103, timestamp: 1_700_000_000_003, key: Buffer.alloc(0), value: Buffer.from([0x80]) }),
    ];
    const event = kafkaEvent(
      selfManaged,
      source.map((r) => eventRecord('orders', 4, r)),
    );
    // Through JSON, as the invocation carries it.
    const batches = parseKafkaEvent(JSON.parse(JSON.stringify(event)));
    expect(batches).toHaveLength(1);
    expect(batches[0]!.topic).toBe('orders');
    expect(batches[0]!.partition).toBe(4);
    expect(batches[0]!.records).toEqual(source);
    const headers = batches[0]!.records[0]!.headers;
    expect(Buffer.isBuffer(headers[0]!.value)).toBe(true);
    expect(headers[0]!.value!.equals(Buffer.from([0xff, 0x80, 0x01, 0x00, 0x7f]))).toBe(true);
    expect(headers[1]!.value).toBeNull();
  });

  it('round-trips an MSK event too', () => {
    const source = [record({ headers: [{ key: 'x', value: Buffer.from([0xc3, 0xa9]) }] })];
    const batches = parseKafkaEvent(
      JSON.parse(
        JSON.stringify(
          kafkaEvent(
            msk,
            source.map((r) => eventRecord('payments', 0, r)),
          ),
        ),
      ),
    );
    expect(batches).toEqual([{ topic: 'payments', partition: 0, records: source }]);
  });
});

describe('mappingDefinitions', () => {
  it('reads a self-managed Kafka mapping', () => {
    const stack = stackOf({
      MirrorLambdaFunction: { Type: 'AWS::Lambda::Function', Properties: {} },
      MirrorEventSourceMappingKafkaOrders: mapping(mappingProperties()),
    });
    expect(mappingDefinitions(stack)).toEqual([
      {
        logicalId: 'MirrorEventSourceMappingKafkaOrders',
        functionArn: 'arn:aws:lambda:us-east-1:000000000000:function:kdr-local-mirror',
        kind: 'SelfManagedKafka',
        bootstrapServers: ['127.0.0.1:19092'],
        topic: 'orders',
        batchSize: 1000,
        batchingWindowSeconds: 1,
        startingPosition: 'TRIM_HORIZON',
        consumerGroupId: 'g-orders',
        enabled: true,
      },
    ]);
    expect(mappingDefinitions(stack)[0]).not.toHaveProperty('eventSourceArn');
  });

  it("applies Lambda's defaults: BatchSize 100, a 0.5 s window, TRIM_HORIZON, enabled", () => {
    const {
      BatchSize: _b,
      MaximumBatchingWindowInSeconds: _w,
      StartingPosition: _s,
      ...properties
    } = mappingProperties();
    const [definition] = mappingDefinitions(stackOf({ M: mapping(properties) }));
    expect(DEFAULT_BATCH_SIZE).toBe(100);
    expect(DEFAULT_BATCHING_WINDOW_SECONDS).toBe(0.5);
    expect(definition!.batchSize).toBe(100);
    expect(definition!.batchingWindowSeconds).toBe(0.5);
    expect(definition!.startingPosition).toBe('TRIM_HORIZON');
    expect(definition!.enabled).toBe(true);
  });

  it('keeps a zero batching window (not replaced by the default)', () => {
    const [definition] = mappingDefinitions(
      stackOf({ M: mapping({ ...mappingProperties(), MaximumBatchingWindowInSeconds: 0 }) }),
    );
    expect(definition!.batchingWindowSeconds).toBe(0);
  });

  it('carries Enabled: false and StartingPosition LATEST', () => {
    const [definition] = mappingDefinitions(
      stackOf({ M: mapping({ ...mappingProperties(), Enabled: false, StartingPosition: 'LATEST' }) }),
    );
    expect(definition!.enabled).toBe(false);
    expect(definition!.startingPosition).toBe('LATEST');
  });

  it('reads an MSK mapping: kind aws:kafka, its ARN and group id, no bootstrap servers', () => {
    const {
      SelfManagedEventSource: _e,
      SelfManagedKafkaEventSourceConfig: _c,
      ...properties
    } = mappingProperties();
    const [definition] = mappingDefinitions(
      stackOf({
        MskMapping: mapping({
          ...properties,
          EventSourceArn: 'arn:aws:kafka:us-east-1:000000000000:cluster/primary/abc',
          AmazonManagedKafkaEventSourceConfig: { ConsumerGroupId: 'g-msk' },
        }),
      }),
    );
    expect(definition).toMatchObject({
      logicalId: 'MskMapping',
      kind: 'aws:kafka',
      eventSourceArn: 'arn:aws:kafka:us-east-1:000000000000:cluster/primary/abc',
      bootstrapServers: [],
      consumerGroupId: 'g-msk',
    });
  });

  it('leaves the group id unset when the template sets none', () => {
    const { SelfManagedKafkaEventSourceConfig: _c, ...properties } = mappingProperties();
    const [definition] = mappingDefinitions(stackOf({ M: mapping(properties) }));
    expect(definition!.consumerGroupId).toBeUndefined();
  });

  it('returns every mapping and ignores other resources', () => {
    const stack = stackOf({
      A: mapping(mappingProperties()),
      Queue: { Type: 'AWS::SQS::Queue', Properties: { Topics: ['a', 'b'] } },
      B: mapping({ ...mappingProperties(), Topics: ['payments'] }),
    });
    expect(mappingDefinitions(stack).map((d) => [d.logicalId, d.topic])).toEqual([
      ['A', 'orders'],
      ['B', 'payments'],
    ]);
    expect(mappingDefinitions(stackOf({}))).toEqual([]);
  });

  const refusal = (properties: Record<string, unknown>) => {
    try {
      mappingDefinitions(stackOf({ OrdersMapping: mapping(properties) }));
    } catch (error) {
      return error;
    }
    throw new Error('expected a refusal');
  };

  it('refuses a mapping of two topics, naming the resource', () => {
    const error = refusal({ ...mappingProperties(), Topics: ['orders', 'payments'] });
    expect(error).toBeInstanceOf(LabError);
    expect((error as LabError).code).toBe('LAB_STATE_CONFLICT');
    expect((error as LabError).message).toContain('OrdersMapping');
    expect((error as LabError).message).toContain('exactly one topic');
  });

  it('refuses a mapping without topics', () => {
    const { Topics: _t, ...properties } = mappingProperties();
    const error = refusal(properties);
    expect(error).toBeInstanceOf(LabError);
    expect((error as LabError).message).toContain('OrdersMapping');
  });

  it('refuses StartingPosition AT_TIMESTAMP, naming the resource', () => {
    const error = refusal({ ...mappingProperties(), StartingPosition: 'AT_TIMESTAMP' });
    expect(error).toBeInstanceOf(LabError);
    expect((error as LabError).message).toContain('OrdersMapping');
    expect((error as LabError).message).toContain('AT_TIMESTAMP');
  });
});

describe('retryDelayMs', () => {
  it('doubles from 1 s and stops at 30 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20, 100].map(retryDelayMs)).toEqual([
      1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000,
    ]);
  });

  it('treats attempts before the first as the first', () => {
    expect(retryDelayMs(0)).toBe(1000);
  });
});
