import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { lz4CompressBlock, lz4Frame, snappy, zstd } from '../../../../src/adapters/kafka/codecs.ts';
import { prng } from '../../../helpers/records.ts';

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

/** Walks an LZ4 block's sequences and checks the end-of-block rules Java's decoder enforces. */
function checkBlockRules(block: Buffer, originalLength: number) {
  let i = 0;
  let produced = 0;
  let lastMatchStart = -1;
  while (i < block.length) {
    const token = block[i++]!;
    let literals = token >> 4;
    if (literals === 15) for (let b = 255; b === 255; ) literals += b = block[i++]!;
    i += literals;
    produced += literals;
    if (i >= block.length) break; // the last sequence has literals only
    i += 2;
    let match = (token & 15) + 4;
    if ((token & 15) === 15) for (let b = 255; b === 255; ) match += b = block[i++]!;
    lastMatchStart = produced;
    produced += match;
  }
  expect(produced).toBe(originalLength);
  if (lastMatchStart >= 0) expect(originalLength - lastMatchStart).toBeGreaterThanOrEqual(12);
  return { lastMatchStart };
}

describe('lz4 blocks', () => {
  const random = prng(7);
  const samples: Buffer[] = [
    Buffer.alloc(0),
    Buffer.from('aaaaaaaaaaaa'),
    Buffer.from('aaaaaaaaaaaaa'),
    Buffer.alloc(64 * 1024, 7),
    Buffer.from('abcdefgh'.repeat(8192)),
    Buffer.from(Array.from({ length: 70_000 }, () => Math.floor(random() * 4))),
  ];
  for (let n = 10; n < 40; n++) samples.push(Buffer.alloc(n, 1));

  it('keeps the last match 12 bytes from the end and ends with literals', () => {
    for (const sample of samples) {
      for (let start = 0; start < sample.length; start += 64 * 1024) {
        const block = sample.subarray(start, start + 64 * 1024);
        checkBlockRules(lz4CompressBlock(block), block.length);
      }
      expect(lz4Frame.decompress(lz4Frame.compress(sample))).toEqual(sample);
    }
  });
});
