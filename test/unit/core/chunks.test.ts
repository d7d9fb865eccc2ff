import { describe, expect, it } from 'vitest';
import { chunkSuffix, fromChunks, toChunks } from '../../../src/core/chunks.ts';

describe('chunks', () => {
  it('splits a value into chunks of at most the given size and joins them back', () => {
    const value = { rows: Array.from({ length: 5000 }, (_, i) => ({ i, r: Math.random() })) };
    const chunks = toChunks(value, 10_000);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(10_000);
    expect(fromChunks(chunks, chunks.length)).toEqual(value);
  });

  it('refuses a missing chunk, naming how many were expected', () => {
    const chunks = toChunks({ big: 'x'.repeat(1000) + Math.random() }, 10);
    expect(() => fromChunks(chunks.slice(1), chunks.length)).toThrow(`expected ${chunks.length} chunk(s)`);
  });

  it('refuses a chunk size that is not a positive integer', () => {
    expect(() => toChunks({}, 0)).toThrow('chunkBytes must be a positive integer, got 0');
  });

  it('pads suffixes so that chunks sort in order', () => {
    expect([chunkSuffix(10), chunkSuffix(9)].sort()).toEqual(['00009', '00010']);
  });
});
