import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import type { Header, SourceRecord } from './records.ts';
import { zstdCompress, zstdDecompress } from './zstd.ts';

/**
 * The segment format of snapshots and failback exports: "KDRSEG01" followed by length-delimited
 * records, compressed as a whole (zstd, or gzip: segments written before zstd, or by choice), identified
 * by the SHA-256 of the compressed bytes. The compressed bytes' own magic number says which: readers
 * need no other field. Each record:
 *
 *   int64 offset | int64 timestamp | int8 timestamp type (0 create, 1 log append)
 *   int32 key length (-1 null) | key | int32 value length (-1 null) | value
 *   int32 header count | per header: int32 key length | key (UTF-8) | int32 value length (-1 null) | value
 *
 * Everything big-endian. Keys, values and headers are kept byte for byte, with nulls and order.
 */

export const SEGMENT_MAGIC = Buffer.from('KDRSEG01');

/**
 * zstd by default: on record data it compressed about 6x faster than gzip at level 1 here, to a slightly
 * smaller size (bench: `npm run bench -- snapshot` measures both); gzip stays readable and selectable.
 */
export type SegmentCompression = 'zstd' | 'gzip';
export const SEGMENT_COMPRESSIONS = ['zstd', 'gzip'] as const satisfies readonly SegmentCompression[];

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/** zstd's level 1: the snapshot's bottleneck was compression, and higher levels gained under 1% here. */
const ZSTD_LEVEL = 1;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Compresses off the main thread where the codec allows (zlib runs in libuv's pool; the zstd WASM does not). */
async function compress(plain: Buffer, compression: SegmentCompression): Promise<Buffer> {
  if (compression === 'gzip') return gzipAsync(plain);
  return zstdCompress(plain, ZSTD_LEVEL);
}

async function decompress(data: Buffer): Promise<Buffer> {
  if (data.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) return gunzipAsync(data);
  if (data.subarray(0, ZSTD_MAGIC.length).equals(ZSTD_MAGIC)) return zstdDecompress(data);
  throw new RangeError('not a kdr segment (neither gzip nor zstd)');
}

export interface EncodedSegment {
  data: Buffer;
  compression: SegmentCompression;
  sha256: string;
  records: number;
  /** Uncompressed size of the records. */
  bytes: number;
  firstOffset: number;
  lastOffset: number;
  firstTimestamp: number;
  lastTimestamp: number;
  /** The oldest record's timestamp (CreateTime need not grow with the offset). */
  minTimestamp: number;
}

function sizeOf(r: SourceRecord): number {
  let n = 8 + 8 + 1 + 4 + (r.key?.length ?? 0) + 4 + (r.value?.length ?? 0) + 4;
  for (const h of r.headers) n += 4 + Buffer.byteLength(h.key) + 4 + (h.value?.length ?? 0);
  return n;
}

/** The records' bytes, after `head` (the segment's magic: one buffer, no copy of the whole to prepend it). */
export function encodeRecords(records: readonly SourceRecord[], head: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(records.reduce((n, r) => n + sizeOf(r), head.length));
  let at = head.copy(out, 0);
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
    // A view, not a copy: the records share the segment's buffer, freed once the last of them is.
    const b = body.subarray(at, at + length);
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

export async function encodeSegment(
  records: readonly SourceRecord[],
  compression: SegmentCompression = 'zstd',
): Promise<EncodedSegment> {
  if (records.length === 0) throw new RangeError('a segment holds at least one record');
  const plain = encodeRecords(records, SEGMENT_MAGIC);
  const data = await compress(plain, compression);
  return {
    data,
    compression,
    sha256: createHash('sha256').update(data).digest('hex'),
    records: records.length,
    bytes: plain.length - SEGMENT_MAGIC.length,
    firstOffset: records[0]!.offset,
    lastOffset: records.at(-1)!.offset,
    firstTimestamp: records[0]!.timestamp,
    lastTimestamp: records.at(-1)!.timestamp,
    minTimestamp: records.reduce((min, r) => Math.min(min, r.timestamp), Number.POSITIVE_INFINITY),
  };
}

/** Decodes a segment; with `sha256`, refuses one whose bytes do not match it. */
export async function decodeSegment(data: Buffer, sha256?: string): Promise<SourceRecord[]> {
  if (sha256 !== undefined) {
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== sha256)
      throw new RangeError(`segment checksum mismatch: expected ${sha256}, got ${actual}`);
  }
  const plain = await decompress(data);
  if (!plain.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC))
    throw new RangeError('not a kdr segment (bad magic)');
  return decodeRecords(plain.subarray(SEGMENT_MAGIC.length));
}
