import { describe, expect, it } from 'vitest';
import {
  decideGeneration,
  generationStale,
  type PartitionHead,
  withGap,
} from '../../../src/core/generation.ts';
import { exactTargetOf } from '../../../src/core/offsetMap.ts';

const head = (overrides: Partial<PartitionHead> = {}): PartitionHead => ({
  generation: 1,
  sourceTopicId: 'S1',
  standbyTopicId: 'T1',
  standbyFloor: 0,
  since: 1,
  gaps: [],
  previous: [],
  ...overrides,
});
const standby = { logStart: 0, lastStable: 120 };
const latest = { lastSource: 99, lastStandby: 110 };

describe('decideGeneration', () => {
  it('starts generation 1 for a partition never seen, to be written with the first entry', () => {
    const d = decideGeneration({
      head: undefined,
      live: { source: 'S1', standby: 'T1' },
      latest: undefined,
      standby,
      now: 5,
    });
    expect(d).toMatchObject({
      kind: 'same',
      write: true,
      head: { generation: 1, sourceTopicId: 'S1', standbyFloor: 0 },
    });
  });

  it('keeps the generation while both ids are the same, and writes nothing', () => {
    const d = decideGeneration({
      head: head(),
      live: { source: 'S1', standby: 'T1' },
      latest,
      standby,
      now: 5,
    });
    expect(d).toEqual({ kind: 'same', write: false, head: head() });
  });

  it('begins a new generation after everything on the standby when the source topic was re-created', () => {
    const d = decideGeneration({
      head: head(),
      live: { source: 'S2', standby: 'T1' },
      latest,
      standby,
      now: 7,
    });
    expect(d.kind).toBe('new');
    expect(d.head).toMatchObject({
      generation: 2,
      sourceTopicId: 'S2',
      standbyFloor: 120,
      since: 7,
      gaps: [],
    });
    expect(d.head.previous[0]).toMatchObject({
      generation: 1,
      sourceTopicId: 'S1',
      lastSource: 99,
      lastStandby: 110,
      endedAt: 7,
    });
    if (d.kind === 'new') expect(d.reason).toMatch(/source topic was re-created \(topic id S1 -> S2\)/);
  });

  it('begins a new generation on the new log when the standby topic was re-created under kdr', () => {
    const d = decideGeneration({
      head: head(),
      live: { source: 'S1', standby: 'T2' },
      latest,
      standby: { logStart: 0, lastStable: 0 },
      now: 7,
    });
    expect(d).toMatchObject({ kind: 'new', head: { generation: 2, standbyTopicId: 'T2', standbyFloor: 0 } });
  });

  it('learns ids a head lacked without a new generation; unknown live ids change nothing', () => {
    const learned = decideGeneration({
      head: head({ sourceTopicId: null }),
      live: { source: 'S1', standby: 'T1' },
      latest,
      standby,
      now: 5,
    });
    expect(learned).toMatchObject({
      kind: 'same',
      write: true,
      head: { generation: 1, sourceTopicId: 'S1' },
    });
    const unknown = decideGeneration({
      head: head(),
      live: { source: null, standby: null },
      latest,
      standby,
      now: 5,
    });
    expect(unknown).toMatchObject({ kind: 'same', write: false });
    expect(generationStale(head(), { source: null, standby: 'T1' })).toBe(false);
    expect(generationStale(head(), { source: 'S9', standby: 'T1' })).toBe(true);
  });

  it('takes a source log that ends before what was mirrored for a re-created topic when ids cannot tell', () => {
    const noHead = decideGeneration({
      head: undefined,
      live: { source: 'S2', standby: 'T1' },
      latest,
      standby,
      sourceEnd: 12,
      now: 9,
    });
    expect(noHead).toMatchObject({
      kind: 'new',
      head: { generation: 2, sourceTopicId: 'S2', standbyFloor: 120 },
    });
    if (noHead.kind === 'new') expect(noHead.reason).toMatch(/source log ends at 12, before offset 99/);
    const noIds = decideGeneration({
      head: head({ sourceTopicId: null }),
      live: { source: null, standby: null },
      latest,
      standby,
      sourceEnd: 99,
      now: 9,
    });
    expect(noIds).toMatchObject({ kind: 'new', head: { generation: 2 } });
    // A log that reaches past what was mirrored is the same topic.
    const same = decideGeneration({
      head: undefined,
      live: { source: 'S1', standby: 'T1' },
      latest,
      standby,
      sourceEnd: 100,
      now: 9,
    });
    expect(same).toMatchObject({ kind: 'same', head: { generation: 1 } });
    // Known, equal ids decide: the end is not even looked at.
    const known = decideGeneration({
      head: head(),
      live: { source: 'S1', standby: 'T1' },
      latest,
      standby,
      sourceEnd: 5,
      now: 9,
    });
    expect(known).toMatchObject({ kind: 'same', write: false });
  });

  it('keeps at most five earlier generations', () => {
    let h = head();
    for (let i = 2; i <= 8; i++) {
      h = decideGeneration({
        head: h,
        live: { source: `S${i}`, standby: 'T1' },
        latest,
        standby,
        now: i,
      }).head;
    }
    expect(h.generation).toBe(8);
    expect(h.previous.map((p) => p.generation)).toEqual([7, 6, 5, 4, 3]);
  });
});

describe('withGap', () => {
  it('records a gap, extends one that touches the last, and keeps the last twenty', () => {
    let h = withGap(head(), { from: 10, to: 60, count: 50, seenAt: 1, side: 'source' });
    h = withGap(h, { from: 60, to: 70, count: 10, seenAt: 2, side: 'source' });
    expect(h.gaps).toEqual([{ from: 10, to: 70, count: 60, seenAt: 1, side: 'source' }]);
    for (let i = 0; i < 30; i++)
      h = withGap(h, { from: 100 + 10 * i, to: 105 + 10 * i, count: 5, seenAt: 3, side: 'source' });
    expect(h.gaps).toHaveLength(20);
    expect(h.gaps.at(-1)).toMatchObject({ from: 390, to: 395 });
  });
});

describe('exactTargetOf', () => {
  const entries = [
    {
      topic: 't',
      partition: 0,
      lastSource: 9,
      lastStandby: 19,
      lastTimestamp: 0,
      mirroredAt: 0,
      runs: [
        { sourceStart: 0, standbyStart: 10, count: 5 },
        { sourceStart: 7, standbyStart: 17, count: 3 },
      ],
    },
  ];
  it('gives the standby offset of exactly that source record, nothing for a gap or beyond', () => {
    expect(exactTargetOf(entries, 0)).toBe(10);
    expect(exactTargetOf(entries, 4)).toBe(14);
    expect(exactTargetOf(entries, 5)).toBeUndefined();
    expect(exactTargetOf(entries, 8)).toBe(18);
    expect(exactTargetOf(entries, 10)).toBeUndefined();
  });
});
