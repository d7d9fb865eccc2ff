import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Header, SourceRecord } from './records.ts';

/**
 * The segment format of snapshots and failback exports: "KDRSEG01" followed by length-delimited
 * records, gzip-compressed as a whole, identified by the SHA-256 of the compressed bytes. Each record:
 *
 *   int64 offset | int64 timestamp | int8 timestamp type (0 create, 1 log append)
 *   int32 key length (-1 null) | key | int32 value length (-1 null) | value
 *   int32 header count | per header: int32 key length | key (UTF-8) | int32 value length (-1 null) | value
 *
 * Everything big-endian. Keys, values and headers are kept byte for byte, with nulls and order.
 */

export const SEGMENT_MAGIC = Buffer.from('KDRSEG01');

export interface EncodedSegment {
  data: Buffer;
  sha256: string;
  records: number;
  /** Uncompressed size of the records. */
  bytes: number;
  firstOffset: number;
  lastOffset: number;
  firstTimestamp: number;
  lastTimestamp: number;
}

function sizeOf(r: SourceRecord): number {
  let n = 8 + 8 + 1 + 4 + (r.key?.length ?? 0) + 4 + (r.value?.length ?? 0) + 4;
  for (const h of r.headers) n += 4 + Buffer.byteLength(h.key) + 4 + (h.value?.length ?? 0);
  return n;
}

export function encodeRecords(records: readonly SourceRecord[]): Buffer {
  const out = Buffer.alloc(records.reduce((n, r) => n + sizeOf(r), 0));
  let at = 0;
  const bytes = (b: Buffer | null) => {
    out.writeInt32BE(b === null ? -1 : b.length, at);
    at += 4;
    if (b) at += b.copy(out, at);
  };
  for (const r of records) {
    out.writeBigInt64BE(BigInt(r.offset), at);
    out.writeBigInt64BE(BigInt(r.timestamp), at + 8);
    out.writeInt8(r.timestampType === 'LogAppendTime' ? 1 : 0, at + 16);
    at += 17;
    bytes(r.key);
    bytes(r.value);
    out.writeInt32BE(r.headers.length, at);
    at += 4;
    for (const h of r.headers) {
      bytes(Buffer.from(h.key, 'utf8'));
      bytes(h.value);
    }
  }
  return out;
}

export function decodeRecords(body: Buffer): SourceRecord[] {
  const records: SourceRecord[] = [];
  let at = 0;
  const need = (n: number) => {
    if (at + n > body.length) throw new RangeError(`segment truncated at byte ${at} (needs ${n} more)`);
  };
  const bytes = (): Buffer | null => {
    need(4);
    const length = body.readInt32BE(at);
    at += 4;
    if (length === -1) return null;
    if (length < 0) throw new RangeError(`bad length ${length} at byte ${at - 4}`);
    need(length);
    const b = Buffer.from(body.subarray(at, at + length));
    at += length;
    return b;
  };
  while (at < body.length) {
    need(17);
    const offset = Number(body.readBigInt64BE(at));
    const timestamp = Number(body.readBigInt64BE(at + 8));
    const type = body.readInt8(at + 16);
    at += 17;
    const key = bytes();
    const value = bytes();
    need(4);
    const count = body.readInt32BE(at);
    at += 4;
    const headers: Header[] = [];
    for (let i = 0; i < count; i++) headers.push({ key: bytes()!.toString('utf8'), value: bytes() });
    records.push({
      offset,
      timestamp,
      timestampType: type === 1 ? 'LogAppendTime' : 'CreateTime',
      key,
      value,
      headers,
    });
  }
  return records;
}

export function encodeSegment(records: readonly SourceRecord[]): EncodedSegment {
  if (records.length === 0) throw new RangeError('a segment holds at least one record');
  const body = encodeRecords(records);
  const data = gzipSync(Buffer.concat([SEGMENT_MAGIC, body]));
  return {
    data,
    sha256: createHash('sha256').update(data).digest('hex'),
    records: records.length,
    bytes: body.length,
    firstOffset: records[0]!.offset,
    lastOffset: records.at(-1)!.offset,
    firstTimestamp: records[0]!.timestamp,
    lastTimestamp: records.at(-1)!.timestamp,
  };
}

/** Decodes a segment; with `sha256`, refuses one whose bytes do not match it. */
export function decodeSegment(data: Buffer, sha256?: string): SourceRecord[] {
  if (sha256 !== undefined) {
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== sha256)
      throw new RangeError(`segment checksum mismatch: expected ${sha256}, got ${actual}`);
  }
  const plain = gunzipSync(data);
  if (!plain.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC))
    throw new RangeError('not a kdr segment (bad magic)');
  return decodeRecords(plain.subarray(SEGMENT_MAGIC.length));
}
