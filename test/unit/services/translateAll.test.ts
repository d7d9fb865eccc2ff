import { describe, expect, it } from 'vitest';
import { entryFromRuns, type OffsetMapEntry, type OffsetRun } from '../../../src/core/offsetMap.ts';
import type { TopicPartition } from '../../../src/core/records.ts';
import type { OffsetMapStore } from '../../../src/ports/offsetMapStore.ts';
import { mirroredOnce, translateAll } from '../../../src/services/checkpoint.ts';

/**
 * translateAll from the latest entry (issue 15): offsets at or after the latest entry's first run are
 * translated from it alone, the rest through the range Query, and every result equals the one the range
 * Query alone gives, on maps with gaps (compaction, markers) between and inside entries.
 */

/** Consecutive entries as DynamoDB returns them; counts the range Queries. */
class Entries implements OffsetMapStore {
  ranges = 0;
  constructor(readonly entries: OffsetMapEntry[]) {}
  async put(): Promise<void> {}
  async remove(): Promise<void> {}
  async latest() {
    return this.entries.at(-1);
  }
  async covering(_tp: TopicPartition, o: number) {
    return this.entries.find((e) => e.lastSource >= o);
  }
  async coveringRange(_tp: TopicPartition, from: number, to: number) {
    this.ranges++;
    const first = this.entries.findIndex((e) => e.lastSource >= from);
    if (first < 0) return [];
    const last = this.entries.findIndex((e) => e.lastSource >= to);
    return this.entries.slice(first, last < 0 ? undefined : last + 1);
  }
  async coveringStandby() {
    return undefined;
  }
  async head() {
    return undefined;
  }
  async putHead(): Promise<void> {}
}

/** A seeded map: `n` entries, each a few runs with random gaps on both sides. */
function randomMap(seed: number, n: number): OffsetMapEntry[] {
  let x = seed;
  const next = (k: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % k;
  };
  let source = next(5);
  let standby = next(5);
  const entries: OffsetMapEntry[] = [];
  for (let e = 0; e < n; e++) {
    const runs: OffsetRun[] = [];
    for (let r = 0; r <= next(3); r++) {
      const count = 1 + next(6);
      runs.push({ sourceStart: source, standbyStart: standby, count });
      source += count + next(3);
      standby += count + 1 + next(2);
    }
    entries.push(entryFromRuns({ topic: 't', partition: 0 }, runs, 0, 0));
  }
  return entries;
}

describe('translateAll with the latest entry', () => {
  it('gives what the range Query gives, for every offset before, inside and after the map', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const entries = randomMap(seed, 1 + (seed % 5));
      const end = entries.at(-1)!.lastSource + 3;
      const items = Array.from({ length: end }, (_, offset) => ({ topic: 't', partition: 0, offset }));
      const plain = new Entries(entries);
      const shared = new Entries(entries);
      const expected = await translateAll(plain, items);
      const got = await translateAll(shared, items, { mirrored: mirroredOnce(shared) });
      expect(got, `seed ${seed}`).toEqual(expected);
    }
  });

  it('queries no range when every offset is at or after the latest entry’s first run', async () => {
    const entries = randomMap(7, 4);
    const map = new Entries(entries);
    const start = entries.at(-1)!.runs[0]!.sourceStart;
    const items = [start, start + 1, entries.at(-1)!.lastSource, entries.at(-1)!.lastSource + 1].map(
      (offset) => ({ topic: 't', partition: 0, offset }),
    );
    const got = await translateAll(map, items, { mirrored: mirroredOnce(map) });
    expect(map.ranges).toBe(0);
    expect(got.at(-1)!.standbyOffset).toBeNull();
    expect(got[0]!.standbyOffset).toBe(entries.at(-1)!.runs[0]!.standbyStart);
  });

  it('queries nothing for a partition with no entry at all', async () => {
    const map = new Entries([]);
    const got = await translateAll(map, [{ topic: 't', partition: 0, offset: 5 }], {
      mirrored: mirroredOnce(map),
    });
    expect(map.ranges).toBe(0);
    expect(got[0]!.standbyOffset).toBeNull();
  });
});
