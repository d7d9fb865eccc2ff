import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { lz4Frame, snappy, zstd } from '../../../../src/adapters/kafka/codecs.ts';

const inputs = {
  empty: Buffer.alloc(0),
  small: Buffer.from('hello kafka'),
  repetitive: Buffer.from('abc'.repeat(100_000)),
  random: randomBytes(200_000),
};

describe.each(Object.entries(inputs))('codecs on %s input', (_, input) => {
  it('snappy round-trips through the xerial framing', () => {
    const compressed = snappy.compress(input);
    expect(compressed.subarray(0, 8)).toEqual(Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]));
    expect(snappy.decompress(compressed)).toEqual(input);
  });

  it('lz4 round-trips with independent 64 KiB blocks', () => {
    const compressed = lz4Frame.compress(input);
    expect(compressed.readUInt32LE(0)).toBe(0x184d2204);
    expect(compressed[4]).toBe(0x60);
    expect(lz4Frame.decompress(compressed)).toEqual(input);
  });

  it('zstd round-trips', async () => {
    expect(zstd.decompress(await zstd.compress(input))).toEqual(input);
  });
});

it('lz4 writes the frame header checksum Kafka verifies (xxh32 of the descriptor >> 8)', () => {
  // The reference LZ4 frame for FLG=0x60, BD=0x40 has header checksum 0x82 (lz4 CLI, block-independent, 64 KiB).
  expect(lz4Frame.compress(Buffer.from('x'))[6]).toBe(0x82);
});

it('snappy also reads unframed snappy', () => {
  const framed = snappy.compress(inputs.small);
  // strip the 16-byte xerial header and the 4-byte block length: what remains is one raw snappy block
  expect(snappy.decompress(framed.subarray(20))).toEqual(inputs.small);
});
