import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildRuns,
  decodeRuns,
  encodeRuns,
  entryFromRuns,
  expandRuns,
  translateCommitted,
} from '../../../src/core/offsetMap.ts';

const tp = { topic: 't', partition: 0 };

describe('buildRuns', () => {
  it('merges pairs contiguous on both sides and splits at any gap', () => {
    const runs = buildRuns([
      [10, 0],
      [11, 1],
      [12, 2],
      [15, 3], // source gap (compaction, aborted records)
      [16, 4],
      [17, 6], // standby gap (transaction marker)
    ]);
    expect(runs).toEqual([
      { sourceStart: 10, standbyStart: 0, count: 3 },
      { sourceStart: 15, standbyStart: 3, count: 2 },
      { sourceStart: 17, standbyStart: 6, count: 1 },
    ]);
  });

  it('refuses pairs that do not ascend', () => {
    expect(() =>
      buildRuns([
        [5, 5],
        [5, 6],
      ]),
    ).toThrow('must ascend');
  });

  it('is the inverse of expandRuns for any ascending pairs', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 3 })), {
          maxLength: 200,
        }),
        (gaps) => {
          let s = 0;
          let t = 0;
          const pairs = gaps.map(([ds, dt]) => {
            s += ds;
            t += dt;
            return [s, t] as const;
          });
          expect([...expandRuns(buildRuns(pairs))]).toEqual(pairs.map((p) => [...p]));
        },
      ),
    );
  });
});

describe('run encoding', () => {
  it('round-trips and stays small for a compacted partition', () => {
    const pairs = Array.from(
      { length: 10_000 },
      (_, i) => [1_000_000_000_000 + i * 2, 2_000_000_000_000 + i] as const,
    );
    const runs = buildRuns(pairs);
    const text = encodeRuns(runs);
    expect(decodeRuns(text)).toEqual(runs);
    expect(text.length).toBeLessThan(100_000); // well under DynamoDB's 400 KB item limit
  });

  it('rejects malformed text', () => {
    expect(() => decodeRuns('1:2')).toThrow('bad offset run');
    expect(() => decodeRuns('1:2:0')).toThrow('bad offset run');
    expect(() => decodeRuns('a:b:c')).toThrow('bad offset run');
  });
});

describe('translateCommitted', () => {
  // source 10,11,12 → 0,1,2; source 15,16 → 4,5 (marker at standby 3)
  const entry = entryFromRuns(
    tp,
    buildRuns([
      [10, 0],
      [11, 1],
      [12, 2],
      [15, 4],
      [16, 5],
    ]),
    0,
    0,
  );

  it('maps a mirrored offset to its standby offset', () => {
    expect(translateCommitted(entry, 11, 16)).toEqual({
      kind: 'exact',
      standbyOffset: 1,
      mirroredSource: 11,
    });
    expect(translateCommitted(entry, 16, 16)).toEqual({
      kind: 'exact',
      standbyOffset: 5,
      mirroredSource: 16,
    });
  });

  it('maps an offset in a gap to the next mirrored record', () => {
    expect(translateCommitted(entry, 13, 16)).toEqual({
      kind: 'exact',
      standbyOffset: 4,
      mirroredSource: 15,
    });
    expect(translateCommitted(entry, 0, 16)).toEqual({ kind: 'exact', standbyOffset: 0, mirroredSource: 10 });
  });

  it('says when nothing at or after the offset is mirrored', () => {
    expect(translateCommitted(undefined, 17, 16)).toEqual({
      kind: 'beyond-mirrored',
      lastMirroredSource: 16,
    });
  });

  it('records the entry key and the last standby offset', () => {
    expect(entry.lastSource).toBe(16);
    expect(entry.lastStandby).toBe(5);
  });
});
