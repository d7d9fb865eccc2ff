import { describe, expect, it } from 'vitest';
import {
  chainSegments,
  clampGroups,
  clampToLogStart,
  isCompacted,
  normalizeManifest,
  parseDuration,
  planRanges,
  type SegmentRef,
  type SnapshotManifest,
  segmentKey,
  selectForPrune,
  snapshotId,
  unreferenced,
} from '../../../src/core/snapshot.ts';

const SEEN = '2026-12-01T10:00:00.000Z';

const seg = (topic: string, partition: number, first: number, last: number): SegmentRef => ({
  key: segmentKey('s', 'primary', { topic, partition, firstOffset: first, lastOffset: last, sha256: 'x' }),
  topic,
  partition,
  firstOffset: first,
  lastOffset: last,
  firstTimestamp: 0,
  lastTimestamp: 0,
  records: last - first + 1,
  bytes: 1,
  size: 1,
  sha256: 'x',
});

describe('snapshot planning', () => {
  it('names snapshots so that they sort by time', () => {
    expect(snapshotId(Date.UTC(2026, 10, 24, 19, 30, 0, 123), '3fa9')).toBe('20261124T193000Z-3fa9');
  });

  it('continues from the parent cut, starts new topics at the log start, and reports retention gaps', () => {
    const parent = {
      cut: {
        a: { '0': { start: 0, end: 100 }, '1': { start: 0, end: 50 } },
        gone: { '0': { start: 0, end: 9 } },
      },
    };
    const plan = planRanges({
      parent,
      seenAt: SEEN,
      partitions: [
        { topic: 'a', partition: 0, logStart: 0, end: 150 },
        { topic: 'a', partition: 1, logStart: 80, end: 120 }, // retention deleted 50-79 before we read them
        { topic: 'b', partition: 0, logStart: 0, end: 10 }, // new topic
        { topic: 'gone', partition: 0, logStart: 0, end: 3 }, // recreated: ends before the parent's cut
      ],
    });
    expect(plan.ranges).toEqual([
      { topic: 'a', partition: 0, from: 100, to: 150, inherits: true },
      { topic: 'a', partition: 1, from: 80, to: 120, inherits: true },
      { topic: 'b', partition: 0, from: 0, to: 10, inherits: false },
      { topic: 'gone', partition: 0, from: 0, to: 3, inherits: false },
    ]);
    expect(plan.gaps).toEqual([{ topic: 'a', partition: 1, from: 50, to: 80, count: 30, seenAt: SEEN }]);
    expect(plan.warnings[0]).toContain('gone-0 ends at 3, before the parent');
  });

  it('reads a topic again from its start when its id changed (recreated and refilled past the cut)', () => {
    const parent = {
      cut: { t: { '0': { start: 0, end: 100 } }, same: { '0': { start: 0, end: 5 } } },
      topics: {
        t: { topicId: 'old-id', partitions: 1, configs: {}, replicationFactor: 1 },
        same: { topicId: 'same-id', partitions: 1, configs: {}, replicationFactor: 1 },
      },
    };
    const plan = planRanges({
      parent,
      seenAt: SEEN,
      partitions: [
        { topic: 't', partition: 0, logStart: 0, end: 500 },
        { topic: 'same', partition: 0, logStart: 0, end: 9 },
      ],
      topicIds: { t: 'new-id', same: 'same-id' },
    });
    expect(plan.ranges).toEqual([
      { topic: 't', partition: 0, from: 0, to: 500, inherits: false },
      { topic: 'same', partition: 0, from: 5, to: 9, inherits: true },
    ]);
    expect(plan.warnings).toEqual([
      't was recreated since the parent snapshot (topic id old-id is now new-id): it is read again from its start',
    ]);
  });

  it('reads compacted topics whole in every snapshot, inheriting nothing from the parent', () => {
    const parent = { cut: { c: { '0': { start: 0, end: 100 } }, d: { '0': { start: 0, end: 100 } } } };
    const plan = planRanges({
      parent,
      seenAt: SEEN,
      compacted: new Set(['c']),
      partitions: [
        { topic: 'c', partition: 0, logStart: 0, end: 150 },
        { topic: 'd', partition: 0, logStart: 0, end: 150 },
      ],
    });
    expect(plan.ranges).toEqual([
      { topic: 'c', partition: 0, from: 0, to: 150, inherits: false },
      { topic: 'd', partition: 0, from: 100, to: 150, inherits: true },
    ]);
    expect(plan.warnings).toEqual([]);
    // DeleteRecords on a compacted topic: what is below its log start is a gap of this snapshot.
    const purged = planRanges({
      parent,
      seenAt: SEEN,
      compacted: new Set(['c']),
      partitions: [{ topic: 'c', partition: 0, logStart: 120, end: 150 }],
    });
    expect(purged.ranges[0]).toMatchObject({ from: 120, inherits: false });
    // A compacted topic recreated since the parent is still reported as such.
    const recreated = planRanges({
      parent,
      seenAt: SEEN,
      compacted: new Set(['c']),
      partitions: [{ topic: 'c', partition: 0, logStart: 0, end: 7 }],
    });
    expect(recreated.warnings).toEqual([
      "c-0 ends at 7, before the parent's cut 100: the topic was recreated; it is read again from its start",
    ]);
    expect(purged.gaps).toEqual([{ topic: 'c', partition: 0, from: 0, to: 120, count: 120, seenAt: SEEN }]);
    expect(['compact', 'compact,delete', 'delete, compact'].map(isCompacted)).toEqual([true, true, true]);
    expect(['delete', '', null, undefined].map(isCompacted)).toEqual([false, false, false, false]);
  });

  it('clamps a read to the log start: the purged offsets are a gap, at most up to the cut', () => {
    const range = { topic: 't', partition: 2, next: 40, to: 100 };
    expect(clampToLogStart(range, 40, SEEN)).toEqual({ next: 40 });
    expect(clampToLogStart(range, 10, SEEN)).toEqual({ next: 40 });
    expect(clampToLogStart(range, 70, SEEN)).toEqual({
      next: 70,
      gap: { topic: 't', partition: 2, from: 40, to: 70, count: 30, seenAt: SEEN },
    });
    // Purged to the high watermark, beyond the cut: the gap ends at the cut.
    expect(clampToLogStart(range, 130, SEEN).gap).toMatchObject({ from: 40, to: 100, count: 60 });
    // A range already read has nothing to lose.
    expect(clampToLogStart({ ...range, next: 100 }, 130, SEEN)).toEqual({ next: 100 });
  });

  it('reads old manifests: their gaps get a count and the cut as the time they were seen', () => {
    const old = {
      cutAt: SEEN,
      gaps: [
        { topic: 't', partition: 0, from: 5, to: 9 },
        { topic: 't', partition: 1, from: 0, to: 3, count: 3, seenAt: '2026-12-02T00:00:00.000Z' },
      ],
    } as unknown as SnapshotManifest;
    expect(normalizeManifest(old).gaps).toEqual([
      { topic: 't', partition: 0, from: 5, to: 9, count: 4, seenAt: SEEN },
      { topic: 't', partition: 1, from: 0, to: 3, count: 3, seenAt: '2026-12-02T00:00:00.000Z' },
    ]);
  });

  it('names segments by offsets and checksum: a re-read with other records never overwrites', () => {
    const ref = { topic: 't', partition: 0, firstOffset: 0, lastOffset: 99 };
    const a = segmentKey('s', 'primary', { ...ref, sha256: 'a'.repeat(64) });
    const b = segmentKey('s', 'primary', { ...ref, sha256: 'b'.repeat(64) });
    expect(a).toBe(`s/segments/primary/t/0/${'0'.repeat(20)}-${'0'.repeat(18)}99-${'a'.repeat(16)}.kdrseg`);
    expect(a).not.toBe(b);
  });

  it('clamps group offsets beyond the cut and reports them', () => {
    const cut = { t: { '0': { start: 0, end: 10 } } };
    const result = clampGroups(
      [
        { group: 'g', topic: 't', partition: 0, offset: 12 },
        { group: 'h', topic: 't', partition: 0, offset: 4 },
        { group: 'h', topic: 'other', partition: 0, offset: 4 },
      ],
      cut,
    );
    expect(result.groups).toEqual({ g: { t: { '0': 10 } }, h: { t: { '0': 4 } } });
    expect(result.clamped).toEqual([{ group: 'g', topic: 't', partition: 0, committed: 12, clampedTo: 10 }]);
  });

  it('lists the whole chain: parent segments of continued partitions, then the new ones', () => {
    const parent = { segments: [seg('a', 0, 0, 99), seg('gone', 0, 0, 8)] };
    const chain = chainSegments(parent, new Set(['a\u00000']), [seg('a', 0, 100, 149), seg('b', 0, 0, 9)]);
    expect(chain.map((s) => `${s.topic}-${s.partition}:${s.firstOffset}`)).toEqual([
      'a-0:0',
      'a-0:100',
      'b-0:0',
    ]);
  });

  it('prunes by count and by age; sweeps what nothing references', () => {
    const snaps = [
      { snapshotId: '1', cutAt: '2026-11-20T00:00:00.000Z' },
      { snapshotId: '2', cutAt: '2026-11-22T00:00:00.000Z' },
      { snapshotId: '3', cutAt: '2026-11-24T00:00:00.000Z' },
    ];
    const now = Date.parse('2026-11-24T12:00:00.000Z');
    expect(selectForPrune(snaps, { keep: 2 }, now)).toEqual(['1']);
    expect(selectForPrune(snaps, { olderThanMs: parseDuration('3d') }, now)).toEqual(['1']);
    expect(selectForPrune(snaps, { olderThanMs: parseDuration('1h') }, now).sort()).toEqual(['1', '2', '3']);
    expect(unreferenced(['x', 'y', 'z'], ['y'])).toEqual(['x', 'z']);
  });

  it('parses durations and rejects anything else', () => {
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(() => parseDuration('soon')).toThrow('expected a duration such as 7d');
  });
});
