import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { SourceRecord } from '../../../src/core/records.ts';
import { decodeSegment, encodeSegment } from '../../../src/core/segment.ts';

const records: SourceRecord[] = [
  { offset: 0, timestamp: 0, timestampType: 'CreateTime', key: null, value: null, headers: [] },
  {
    offset: 9_007_199_254_740_991,
    timestamp: 1_700_000_000_000,
    timestampType: 'LogAppendTime',
    key: Buffer.from([0, 255]),
    value: Buffer.alloc(0),
    headers: [
      { key: 'é', value: null },
      { key: 'b', value: Buffer.from([1, 2, 3]) },
      { key: 'é', value: Buffer.alloc(0) },
    ],
  },
];

describe('segments', () => {
  it('round-trip every field, nulls and header order included', () => {
    const segment = encodeSegment(records);
    expect(segment).toMatchObject({
      records: 2,
      firstOffset: 0,
      lastOffset: 9_007_199_254_740_991,
      firstTimestamp: 0,
    });
    expect(decodeSegment(segment.data, segment.sha256)).toEqual(records);
  });

  it('refuse a corrupted segment by its checksum', () => {
    const segment = encodeSegment(records);
    const corrupted = Buffer.from(segment.data);
    corrupted[corrupted.length - 5]! ^= 0xff;
    expect(() => decodeSegment(corrupted, segment.sha256)).toThrow('segment checksum mismatch');
  });

  it('refuse what is not a segment, and a truncated one', () => {
    expect(() => encodeSegment([])).toThrow('at least one record');
    expect(() => decodeSegment(gzipSync(Buffer.from('nope')))).toThrow('bad magic');
    expect(() => decodeSegment(gzipSync(Buffer.concat([Buffer.from('KDRSEG01'), Buffer.alloc(10)])))).toThrow(
      'truncated',
    );
  });
});
