import { describe, expect, it } from 'vitest';
import { type CatchUpTarget, checkCaughtUp } from '../../../src/cli/mirrorLoop.ts';
import type { OffsetMapEntry } from '../../../src/core/offsetMap.ts';
import type { SourceRecord, TopicPartition } from '../../../src/core/records.ts';
import type { Runtime } from '../../../src/runtime.ts';
import type { LatestKnown } from '../../../src/services/lag.ts';

/**
 * `--until-caught-up`'s checks over stand-ins: when what a writer here learned of its partition stands in
 * for the offset map, and when the map is read. A writer fenced by another member (a rebalance this
 * process has not seen) still holds its old entry; trusting it for ever left a run waiting for records
 * another writer had already mirrored.
 */

const tp: TopicPartition = { topic: 'orders', partition: 0 };
const entry = (lastSource: number): OffsetMapEntry => ({
  ...tp,
  lastSource,
  lastStandby: lastSource,
  runs: [{ sourceStart: 0, standbyStart: 0, count: lastSource + 1 }],
  lastTimestamp: 0,
  mirroredAt: 0,
});

/** The source has records 0-9 (end 10); the map says 0-9 are mirrored; the writer here knows 0-5. */
function checkHarness(held: LatestKnown, options: { assignmentKnown?: boolean; preparing?: boolean } = {}) {
  const mapReads: string[] = [];
  const records: SourceRecord[] = Array.from({ length: 10 }, (_, offset) => ({
    offset,
    timestamp: 0,
    timestampType: 'CreateTime',
    key: null,
    value: Buffer.from(String(offset)),
    headers: [],
  }));
  const rt = {
    engine: {
      lastMirrored: () => (held.known ? (held.entry?.lastSource ?? null) : undefined),
      latestKnown: () => held,
      isPreparing: () => options.preparing ?? false,
      assignmentKnown: options.assignmentKnown ?? true,
    },
    sourceAdmin: { topicIds: async () => new Map<string, string>() },
    offsetMap: {
      prefetchHeads: async () => {
        mapReads.push('heads');
      },
      head: async () => undefined,
      latest: async () => {
        mapReads.push('latest');
        return entry(9);
      },
    },
    sourceReader: {
      async *readRange(_tp: TopicPartition, from: number, to: number) {
        yield records.filter((r) => r.offset >= from && r.offset < to);
      },
    },
  } as unknown as Runtime;
  const target: CatchUpTarget = { ...tp, end: 10, logStart: 0, done: false, checkedAt: 0 };
  const check = () =>
    checkCaughtUp(
      rt,
      [target],
      { sourceAlias: 'primary', targetAlias: 'standby' },
      {
        started: 0,
        lastBatchAt: () => 0,
      },
    );
  return { target, check, mapReads };
}

describe('checkCaughtUp', () => {
  it("trusts a writer's entry learned just now: the source's tail is read, the map is not", async () => {
    const { target, check, mapReads } = checkHarness({ known: true, entry: entry(5), at: Date.now() });
    await check();
    expect(mapReads).toEqual([]);
    expect(target.done).toBe(false);
  });

  it("reads the map once the writer's entry is old: another writer mirrored the rest, so it is caught up", async () => {
    const { target, check, mapReads } = checkHarness({
      known: true,
      entry: entry(5),
      at: Date.now() - 31_000,
    });
    await check();
    expect(mapReads).toEqual(['heads', 'latest']);
    expect(target.done).toBe(true);
  });

  it('reads the map for a partition it does not hold', async () => {
    const { target, check, mapReads } = checkHarness({ known: false });
    await check();
    expect(mapReads).toEqual(['heads', 'latest']);
    expect(target.done).toBe(true);
  });

  it("reads nothing before the group's first assignment, nor for a partition being prepared", async () => {
    for (const options of [{ assignmentKnown: false }, { preparing: true }]) {
      const { target, check, mapReads } = checkHarness({ known: false }, options);
      await check();
      expect(mapReads, JSON.stringify(options)).toEqual([]);
      expect(target.done).toBe(false);
    }
  });
});
