import { describe, expect, it } from 'vitest';
import {
  copiedRanges,
  entryFromRuns,
  type OffsetMapEntry,
  type OffsetRun,
  translateThroughCopies,
} from '../../../src/core/offsetMap.ts';

/**
 * The second cycle (review finding 14). After a failover and a failback the primary holds
 *   [0..9 L] [10..14 O] [15..19 R: copies of standby 20..24] 20 marker [21..24 P]
 * and the standby
 *   [0..9 L'] [20..24 S originals] [25..29 O'] [30..33 P'].
 * The forward map (primary -> standby) has L, O, P; the reverse map (standby -> primary) has S -> R.
 */
const tp = { topic: 't', partition: 0 };
const entry = (runs: OffsetRun[]): OffsetMapEntry => entryFromRuns(tp, runs, 0, 0);

const forward = [
  entry([{ sourceStart: 0, standbyStart: 0, count: 10 }]),
  entry([{ sourceStart: 10, standbyStart: 25, count: 5 }]),
  entry([{ sourceStart: 21, standbyStart: 30, count: 4 }]),
];
const reverse = [entry([{ sourceStart: 20, standbyStart: 15, count: 5 }])];

/** What the stores return: the first forward entry by source offset, the first reverse entry by target. */
const translate = (x: number, copies: OffsetMapEntry[] = reverse) =>
  translateThroughCopies(
    forward.find((e) => e.lastSource >= x),
    copies.find((e) => e.lastStandby >= x),
    x,
  );

describe('forward translation through reverse-mirrored copies', () => {
  it('translates an offset inside the copies to the standby original of the next copy', () => {
    expect(translate(15)).toEqual({ standbyOffset: 20, mirroredSource: 15, via: 'copy' });
    expect(translate(17)).toEqual({ standbyOffset: 22, mirroredSource: 17, via: 'copy' });
    expect(translate(19)).toEqual({ standbyOffset: 24, mirroredSource: 19, via: 'copy' });
  });

  it('goes to the first forward-mirrored record when it comes first on the primary', () => {
    // O records come before the copies; P records after them (and after the marker at 20).
    expect(translate(3)).toEqual({ standbyOffset: 3, mirroredSource: 3, via: 'forward' });
    expect(translate(12)).toEqual({ standbyOffset: 27, mirroredSource: 12, via: 'forward' });
    expect(translate(20)).toEqual({ standbyOffset: 30, mirroredSource: 21, via: 'forward' });
    expect(translate(24)).toEqual({ standbyOffset: 33, mirroredSource: 24, via: 'forward' });
  });

  it('without copies is the forward translation, which skips the copied range (the old behaviour)', () => {
    expect(translate(17, [])).toEqual({ standbyOffset: 30, mirroredSource: 21, via: 'forward' });
  });

  it('translates to a copy when nothing after the offset was forward-mirrored (an idle topic after failback)', () => {
    const x = 17;
    expect(translateThroughCopies(undefined, reverse[0], x)).toEqual({
      standbyOffset: 22,
      mirroredSource: 17,
      via: 'copy',
    });
    expect(translateThroughCopies(undefined, undefined, x)).toBeUndefined();
  });
});

describe('copied ranges', () => {
  it('clips the reverse runs to the range asked for and merges adjacent ones', () => {
    const entries = [
      entry([
        { sourceStart: 20, standbyStart: 15, count: 3 },
        { sourceStart: 24, standbyStart: 18, count: 2 },
      ]),
      entry([{ sourceStart: 30, standbyStart: 21, count: 4 }]),
    ];
    expect(copiedRanges(entries, 16, 100)).toEqual([
      { from: 16, to: 20 },
      { from: 21, to: 25 },
    ]);
    expect(copiedRanges(entries, 0, 17)).toEqual([{ from: 15, to: 17 }]);
    expect(copiedRanges(entries, 25, 100)).toEqual([]);
  });
});
