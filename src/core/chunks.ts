import { gunzipSync, gzipSync } from 'node:zlib';

/**
 * A value too big for one DynamoDB item (400 KB), stored as several: its JSON gzipped and cut into
 * chunks. A checkpoint of 40,000 group-partitions is about 4 MB of JSON and a few hundred KB gzipped:
 * a handful of items written in one BatchWriteItem, where one item per group-partition took 1,600.
 */

/** Bytes of one chunk: under the item limit with room for the keys and attribute names. */
export const CHUNK_BYTES = 350_000;

export function toChunks(value: unknown, chunkBytes = CHUNK_BYTES): Buffer[] {
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1)
    throw new RangeError(`chunkBytes must be a positive integer, got ${chunkBytes}`);
  const packed = gzipSync(Buffer.from(JSON.stringify(value) ?? 'null', 'utf8'));
  const chunks: Buffer[] = [];
  for (let i = 0; i < packed.length; i += chunkBytes) chunks.push(packed.subarray(i, i + chunkBytes));
  return chunks;
}

/** The value back from all of its chunks, in order; throws when one is missing or damaged. */
export function fromChunks<T>(chunks: readonly Uint8Array[], expected: number): T {
  if (chunks.length !== expected)
    throw new RangeError(`expected ${expected} chunk(s), found ${chunks.length}`);
  return JSON.parse(gunzipSync(Buffer.concat(chunks)).toString('utf8')) as T;
}

/** A chunk's sort-key suffix: zero-padded, so that the chunks of a value sort in order. */
export const chunkSuffix = (index: number) => String(index).padStart(5, '0');
