import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

/**
 * The reviewed kafkajs patch (patches/kafkajs+2.2.4.patch): ordered headers and null header values. Its
 * timestamp fix is proven against a broker in test/integration/lab.test.ts.
 */
const require = createRequire(import.meta.url);
const Record = require('kafkajs/src/protocol/recordBatch/record/v0');
const decodeRecord = require('kafkajs/src/protocol/recordBatch/record/v0/decoder');
const Decoder = require('kafkajs/src/protocol/decoder');

function roundTrip(message: Record<string, unknown>) {
  const encoded = Record({ offsetDelta: 0, timestampDelta: 0, ...message }).buffer as Buffer;
  const decoder = new Decoder(encoded);
  decoder.readVarInt(); // record length
  return decodeRecord(decoder, { firstOffset: '0', firstTimestamp: '1000', magicByte: 2 });
}

describe('kafkajs record encoding (patched)', () => {
  it('writes a null header value instead of throwing', () => {
    const decoded = roundTrip({ key: null, value: null, headers: { a: null } });
    expect(decoded.headerList).toEqual([{ key: 'a', value: null }]);
  });

  it('keeps header order across different keys with headerList', () => {
    const headerList = [
      { key: 'b', value: Buffer.from('1') },
      { key: 'a', value: Buffer.from([0, 255]) },
      { key: 'b', value: null },
      { key: 'a', value: Buffer.alloc(0) },
    ];
    const decoded = roundTrip({ key: Buffer.from('k'), value: Buffer.from('v'), headerList });
    expect(decoded.headerList).toEqual(headerList);
    // the keyed form stays as kafkajs users know it
    expect(decoded.headers).toEqual({
      b: [Buffer.from('1'), null],
      a: [Buffer.from([0, 255]), Buffer.alloc(0)],
    });
  });

  it('groups messages per partition in order, in one pass', () => {
    const group = require('kafkajs/src/producer/groupMessagesPerPartition');
    const messages = Array.from({ length: 50_000 }, (_, i) => ({ partition: i % 3, value: String(i) }));
    const grouped = group({
      topic: 't',
      partitionMetadata: [{ partitionId: 0 }, { partitionId: 1 }, { partitionId: 2 }],
      messages,
      partitioner: ({ message }: { message: { partition: number } }) => message.partition,
    });
    expect(Object.keys(grouped)).toEqual(['0', '1', '2']);
    expect(grouped[1].map((m: { value: string }) => m.value).slice(0, 3)).toEqual(['1', '4', '7']);
    expect(grouped[0].length + grouped[1].length + grouped[2].length).toBe(50_000);
    expect(group({ topic: 't', partitionMetadata: [], messages, partitioner: () => 0 })).toEqual({});
  });

  it('computes CRC-32C as the byte-at-a-time table does (slice-by-8), at every length and alignment', () => {
    const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C') as (b: Buffer) => number;
    // The reference: the Castagnoli polynomial, reflected, one bit at a time.
    const reference = (b: Buffer) => {
      let crc = 0xffffffff;
      for (const byte of b) {
        crc ^= byte;
        for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
      }
      return (crc ^ 0xffffffff) >>> 0;
    };
    expect(crc32C(Buffer.from('123456789'))).toBe(0xe3069283); // the standard check value
    const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff));
    for (let start = 0; start < 9; start++)
      for (let end = start; end <= bytes.length; end += 7)
        expect(crc32C(bytes.subarray(start, end))).toBe(reference(bytes.subarray(start, end)));
  });
});
