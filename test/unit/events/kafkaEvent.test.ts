import { describe, expect, it } from 'vitest';
import { EventError } from '../../../src/errors.ts';
import { parseKafkaEvent, toKafkaEvent } from '../../../src/events/kafkaEvent.ts';

/** The example event from the AWS Lambda documentation for self-managed Kafka. */
const documented = {
  eventSource: 'SelfManagedKafka',
  bootstrapServers: 'b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092',
  records: {
    'mytopic-0': [
      {
        topic: 'mytopic',
        partition: 0,
        offset: 15,
        timestamp: 1545084650987,
        timestampType: 'CREATE_TIME',
        key: 'cmVjb3JkS2V5',
        value: 'eyJrZXkiOiJ2YWx1ZSJ9',
        headers: [{ headerKey: [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101] }],
      },
    ],
  },
};

describe('parseKafkaEvent', () => {
  it('reads the documented event', () => {
    const [batch] = parseKafkaEvent(documented);
    expect(batch).toMatchObject({ topic: 'mytopic', partition: 0 });
    const record = batch!.records[0]!;
    expect(record.offset).toBe(15);
    expect(record.key!.toString()).toBe('recordKey');
    expect(record.value!.toString()).toBe('{"key":"value"}');
    expect(record.headers).toEqual([{ key: 'headerKey', value: Buffer.from('headerValue') }]);
    expect(record.timestampType).toBe('CreateTime');
  });

  it('reads MSK events, missing keys and values as null, empty ones as empty, null headers', () => {
    const [batch] = parseKafkaEvent({
      eventSource: 'aws:kafka',
      records: {
        't-3': [
          {
            topic: 't',
            partition: 3,
            offset: 1,
            timestamp: 0,
            timestampType: 'LOG_APPEND_TIME',
            headers: [{ n: null }],
          },
          {
            topic: 't',
            partition: 3,
            offset: 2,
            timestamp: 5,
            timestampType: 'CREATE_TIME',
            key: '',
            value: '',
            headers: [],
          },
        ],
      },
    });
    expect(batch!.records[0]).toMatchObject({
      key: null,
      value: null,
      headers: [{ key: 'n', value: null }],
      timestampType: 'LogAppendTime',
    });
    expect(batch!.records[1]).toMatchObject({ key: Buffer.alloc(0), value: Buffer.alloc(0) });
  });

  it('round-trips with toKafkaEvent, header order and duplicates included', () => {
    const batches = [
      {
        topic: 'a.b',
        partition: 7,
        records: [
          {
            offset: 9,
            timestamp: 1,
            timestampType: 'CreateTime' as const,
            key: Buffer.from([0, 255]),
            value: null,
            headers: [
              { key: 'x', value: Buffer.from([1]) },
              { key: 'y', value: null },
              { key: 'x', value: Buffer.from([2]) },
            ],
          },
        ],
      },
    ];
    expect(parseKafkaEvent(JSON.parse(JSON.stringify(toKafkaEvent(batches))))).toEqual(batches);
  });

  it.each([
    ['not an object', 'x', 'at (event)'],
    ['unknown source', { ...documented, eventSource: 'aws:sqs' }, 'at eventSource'],
    ['no records', { eventSource: 'aws:kafka' }, 'at records'],
    [
      'negative offset',
      {
        eventSource: 'aws:kafka',
        records: { 't-0': [{ ...documented.records['mytopic-0'][0], topic: 't', offset: -1 }] },
      },
      'offset',
    ],
    [
      'bad base64',
      {
        eventSource: 'aws:kafka',
        records: { 'mytopic-0': [{ ...documented.records['mytopic-0'][0], value: '%%%' }] },
      },
      'expected base64',
    ],
    [
      'header byte out of range',
      {
        eventSource: 'aws:kafka',
        records: { 'mytopic-0': [{ ...documented.records['mytopic-0'][0], headers: [{ h: [256] }] }] },
      },
      'headers',
    ],
    [
      'key that is not the record partition',
      { eventSource: 'aws:kafka', records: { 'other-1': documented.records['mytopic-0'] } },
      'belong to mytopic-0',
    ],
  ])('rejects %s with the path of the problem', (_, event, message) => {
    expect(() => parseKafkaEvent(event)).toThrow(EventError);
    expect(() => parseKafkaEvent(event)).toThrow(message);
  });
});
