import { decompress as zstdDecompress } from 'fzstd';
import kafkajs from 'kafkajs';
import lz4 from 'lz4js';
import SnappyJS from 'snappyjs';
import type { Compression } from '../../config.ts';
import { zstdCompress } from '../../core/zstd.ts';

/**
 * Compression codecs kafkajs lacks (it has only gzip), in pure JS or WASM so that the Lambda bundle
 * carries no native addon built for another OS. Reading handles what Java clients and librdkafka write.
 */

const { CompressionCodecs, CompressionTypes } = kafkajs;

const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
const XERIAL_BLOCK = 32 * 1024;

/** Snappy in the xerial framing the Java client writes (and reads back); plain snappy is read too. */
export const snappy = {
  compress(input: Buffer): Buffer {
    const header = Buffer.alloc(16);
    XERIAL_MAGIC.copy(header, 0);
    header.writeInt32BE(1, 8);
    header.writeInt32BE(1, 12);
    const parts: Buffer[] = [header];
    for (let offset = 0; offset < input.length; offset += XERIAL_BLOCK) {
      const block = Buffer.from(SnappyJS.compress(input.subarray(offset, offset + XERIAL_BLOCK)));
      const length = Buffer.alloc(4);
      length.writeInt32BE(block.length, 0);
      parts.push(length, block);
    }
    return Buffer.concat(parts);
  },
  decompress(input: Buffer): Buffer {
    if (input.length < 16 || !input.subarray(0, 8).equals(XERIAL_MAGIC)) {
      return Buffer.from(SnappyJS.uncompress(input));
    }
    const parts: Buffer[] = [];
    let offset = 16;
    while (offset + 4 <= input.length) {
      const length = input.readInt32BE(offset);
      offset += 4;
      parts.push(Buffer.from(SnappyJS.uncompress(input.subarray(offset, offset + length))));
      offset += length;
    }
    return Buffer.concat(parts);
  },
};

const LZ4_MAGIC = 0x184d2204;
const LZ4_BLOCK = 64 * 1024;
const MIN_MATCH = 4;
// The LZ4 block format ends with at least 5 literals, and the last match starts at least 12 bytes before
// the end. lz4js breaks the second rule, which Java's decoder (the broker's) rejects; hence this encoder.
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
const HASH_LOG = 12;

function writeLength(out: number[], length: number): void {
  let n = length;
  while (n >= 255) {
    out.push(255);
    n -= 255;
  }
  out.push(n);
}

/** One LZ4 block (greedy, hash-chained on 4-byte sequences), as the reference format specifies it. */
export function lz4CompressBlock(src: Uint8Array): Buffer {
  const out: number[] = [];
  const length = src.length;
  const table = new Int32Array(1 << HASH_LOG).fill(-1);
  const read32 = (i: number) =>
    (src[i]! | (src[i + 1]! << 8) | (src[i + 2]! << 16) | (src[i + 3]! << 24)) >>> 0;
  const hash = (v: number) => Math.imul(v, 2654435761) >>> (32 - HASH_LOG);
  const emit = (literalsFrom: number, literalsTo: number, offset: number, matchLength: number) => {
    const literals = literalsTo - literalsFrom;
    const matchCode = matchLength - MIN_MATCH;
    out.push((Math.min(literals, 15) << 4) | (offset === 0 ? 0 : Math.min(matchCode, 15)));
    if (literals >= 15) writeLength(out, literals - 15);
    for (let i = literalsFrom; i < literalsTo; i++) out.push(src[i]!);
    if (offset === 0) return;
    out.push(offset & 0xff, offset >>> 8);
    if (matchCode >= 15) writeLength(out, matchCode - 15);
  };
  let anchor = 0;
  let ip = 0;
  let misses = 0;
  const matchStartLimit = length - MF_LIMIT;
  const matchEndLimit = length - LAST_LITERALS;
  while (ip <= matchStartLimit) {
    const sequence = read32(ip);
    const h = hash(sequence);
    const ref = table[h]!;
    table[h] = ip;
    if (ref < 0 || ip - ref > 0xffff || read32(ref) !== sequence) {
      ip += 1 + (misses++ >> 6); // skip faster through data that does not compress
      continue;
    }
    misses = 0;
    let matchLength = MIN_MATCH;
    while (ip + matchLength < matchEndLimit && src[ip + matchLength] === src[ref + matchLength])
      matchLength++;
    emit(anchor, ip, ip - ref, matchLength);
    ip += matchLength;
    anchor = ip;
  }
  emit(anchor, length, 0, 0);
  return Buffer.from(out);
}

/**
 * LZ4 frames as Kafka writes them: independent 64 KiB blocks, no checksums but the header's; a block
 * that does not shrink is stored raw. Reading uses lz4js, which handles any frame.
 */
export const lz4Frame = {
  compress(input: Buffer): Buffer {
    const descriptor = Buffer.from([0x60, 0x40]); // version 01 + block independence; 64 KiB max block
    const header = Buffer.alloc(7);
    header.writeUInt32LE(LZ4_MAGIC, 0);
    descriptor.copy(header, 4);
    header[6] = (xxh32(descriptor) >>> 8) & 0xff;
    const parts: Buffer[] = [header];
    for (let offset = 0; offset < input.length; offset += LZ4_BLOCK) {
      const block = input.subarray(offset, offset + LZ4_BLOCK);
      const compressed = lz4CompressBlock(block);
      const length = Buffer.alloc(4);
      if (compressed.length >= block.length) {
        length.writeUInt32LE((0x80000000 | block.length) >>> 0, 0);
        parts.push(length, Buffer.from(block));
      } else {
        length.writeUInt32LE(compressed.length, 0);
        parts.push(length, compressed);
      }
    }
    parts.push(Buffer.alloc(4));
    return Buffer.concat(parts);
  },
  decompress(input: Buffer): Buffer {
    return Buffer.from(lz4.decompress(input));
  },
};

/** xxHash32 with seed 0, for the LZ4 frame header checksum (a handful of bytes). */
function xxh32(data: Uint8Array): number {
  const P1 = 2654435761;
  const P2 = 2246822519;
  const P3 = 3266489917;
  const P4 = 668265263;
  const P5 = 374761393;
  let h = (P5 + data.length) >>> 0;
  let i = 0;
  for (; i + 4 <= data.length; i += 4) {
    const word = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) >>> 0;
    h = (h + Math.imul(word, P3)) >>> 0;
    h = Math.imul((h << 17) | (h >>> 15), P4) >>> 0;
  }
  for (; i < data.length; i++) {
    h = (h + Math.imul(data[i]!, P5)) >>> 0;
    h = Math.imul((h << 11) | (h >>> 21), P1) >>> 0;
  }
  h ^= h >>> 15;
  h = Math.imul(h, P2) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, P3) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * zstd: fzstd (pure JS) reads every frame kind (Java clients may write frames without their content size);
 * compression uses the zstd WASM build the segments use too, loaded on first use.
 */
export const zstd = {
  async compress(input: Buffer): Promise<Buffer> {
    return zstdCompress(input, 3);
  },
  decompress(input: Buffer): Buffer {
    return Buffer.from(zstdDecompress(input));
  },
};

let registered = false;

/** Registers snappy, lz4 and zstd with kafkajs (idempotent). */
export function registerCodecs(): void {
  if (registered) return;
  registered = true;
  const codecs = CompressionCodecs as Record<number, () => unknown>;
  codecs[CompressionTypes.Snappy] = () => ({
    compress: async (encoder: { buffer: Buffer }) => snappy.compress(encoder.buffer),
    decompress: async (buffer: Buffer) => snappy.decompress(buffer),
  });
  codecs[CompressionTypes.LZ4] = () => ({
    compress: async (encoder: { buffer: Buffer }) => lz4Frame.compress(encoder.buffer),
    decompress: async (buffer: Buffer) => lz4Frame.decompress(buffer),
  });
  codecs[CompressionTypes.ZSTD] = () => ({
    compress: async (encoder: { buffer: Buffer }) => zstd.compress(encoder.buffer),
    decompress: async (buffer: Buffer) => zstd.decompress(buffer),
  });
}

export function compressionType(compression: Compression): number {
  const types: Record<Compression, number> = {
    none: CompressionTypes.None,
    gzip: CompressionTypes.GZIP,
    snappy: CompressionTypes.Snappy,
    lz4: CompressionTypes.LZ4,
    zstd: CompressionTypes.ZSTD,
  };
  return types[compression];
}
