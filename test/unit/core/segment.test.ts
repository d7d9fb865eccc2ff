import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { SourceRecord } from '../../../src/core/records.ts';
import { decodeSegment, encodeRecords, encodeSegment, SEGMENT_MAGIC } from '../../../src/core/segment.ts';

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
  it.each(['zstd', 'gzip'] as const)(
    'round-trip every field, nulls and header order included (%s)',
    async (c) => {
      const segment = await encodeSegment(records, c);
      expect(segment).toMatchObject({
        compression: c,
        records: 2,
        firstOffset: 0,
        lastOffset: 9_007_199_254_740_991,
        firstTimestamp: 0,
      });
      expect(await decodeSegment(segment.data, segment.sha256)).toEqual(records);
    },
  );

  it('are zstd by default, told apart from gzip by their own magic number', async () => {
    const zstd = await encodeSegment(records);
    expect([...zstd.data.subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
    const gzip = await encodeSegment(records, 'gzip');
    expect([...gzip.data.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
    expect(zstd.bytes).toBe(gzip.bytes);
  });

  it('read the gzip segments written before zstd (the same bytes under gzip)', async () => {
    const old = gzipSync(Buffer.concat([SEGMENT_MAGIC, encodeRecords(records)]));
    expect(await decodeSegment(old)).toEqual(records);
  });

  it('refuse a corrupted segment by its checksum', async () => {
    const segment = await encodeSegment(records);
    const corrupted = Buffer.from(segment.data);
    corrupted[corrupted.length - 5]! ^= 0xff;
    await expect(decodeSegment(corrupted, segment.sha256)).rejects.toThrow('segment checksum mismatch');
  });

  it('refuse what is not a segment, and a truncated one', async () => {
    await expect(encodeSegment([])).rejects.toThrow('at least one record');
    await expect(decodeSegment(gzipSync(Buffer.from('nope')))).rejects.toThrow('bad magic');
    await expect(decodeSegment(Buffer.from('plain bytes'))).rejects.toThrow('neither gzip nor zstd');
    await expect(
      decodeSegment(gzipSync(Buffer.concat([Buffer.from('KDRSEG01'), Buffer.alloc(10)]))),
    ).rejects.toThrow('truncated');
  });

  it('share one zstd instance with the Kafka codec: both round-trip in one process, in any order', async () => {
    const { zstd } = await import('../../../src/adapters/kafka/codecs.ts');
    const batch = Buffer.from('kafka batch '.repeat(5000));
    for (let i = 0; i < 3; i++) {
      expect(zstd.decompress(await zstd.compress(batch))).toEqual(batch);
      const segment = await encodeSegment(records);
      expect(await decodeSegment(segment.data, segment.sha256)).toEqual(records);
    }
  });
});
