import { describe, expect, it } from 'vitest';
import type { ControlState } from '../../../src/core/control.ts';
import type { PartitionHead } from '../../../src/core/generation.ts';
import { entryFromRuns, type OffsetMapEntry, type OffsetRun } from '../../../src/core/offsetMap.ts';
import type { SourceRecord, TopicPartition } from '../../../src/core/records.ts';
import { silentLogger } from '../../../src/logger.ts';
import type { FetchResult, PartitionOffsets, PartitionReader } from '../../../src/ports/kafka.ts';
import type { OffsetMapStore } from '../../../src/ports/offsetMapStore.ts';
import type { CheckpointSet, StateStore } from '../../../src/ports/stateStore.ts';
import { type CheckpointDeps, runCheckpoint, unmirroredOffsets } from '../../../src/services/checkpoint.ts';

/**
 * Checkpoint logic that needs no cluster: the control-state gate, and observations after a failback that
 * do not count kdr's copies of standby records as lag. Fakes stand in for Kafka and DynamoDB here; the
 * drills in test/integration/checkpoint*.test.ts are the evidence against the real things.
 */

const T = 'orders';
const tp = { topic: T, partition: 0 };
type Kind = 'record' | 'copy' | 'marker';

/** One primary partition: each offset a record, a copy (also a record) or a marker. */
class Log implements PartitionReader {
  constructor(readonly kinds: Kind[]) {}
  fetches = 0;
  async fetch(_tp: TopicPartition, offset: number): Promise<FetchResult> {
    this.fetches++;
    const next = Math.min(offset + 4, this.kinds.length);
    const records: SourceRecord[] = [];
    for (let o = offset; o < next; o++)
      if (this.kinds[o] !== 'marker')
        records.push({
          offset: o,
          timestamp: 1000 + o,
          timestampType: 'CreateTime',
          key: null,
          value: null,
          headers: [],
        });
    const end = this.kinds.length;
    return { records, nextOffset: next, highWatermark: end, lastStable: end, logStart: 0 };
  }
  async *readRange(): AsyncGenerator<SourceRecord[]> {}
  async offsets(): Promise<PartitionOffsets[]> {
    const end = this.kinds.length;
    return [{ partition: 0, logStart: 0, highWatermark: end, lastStable: end }];
  }
  async close(): Promise<void> {}
}

/** Entries in order; `byStandby` lookups as the DynamoDB index answers them. */
class FakeMap implements OffsetMapStore {
  constructor(
    readonly entries: OffsetMapEntry[],
    readonly headOf: PartitionHead | undefined = undefined,
  ) {}
  async put(): Promise<void> {}
  async remove(): Promise<void> {}
  async latest() {
    return this.entries.at(-1);
  }
  async covering(_tp: TopicPartition, o: number) {
    return this.entries.find((e) => e.lastSource >= o);
  }
  async coveringRange(_tp: TopicPartition, from: number) {
    return this.entries.filter((e) => e.lastSource >= from);
  }
  async coveringStandby(_tp: TopicPartition, o: number) {
    return this.entries.find((e) => e.lastStandby >= o);
  }
  async head() {
    return this.headOf;
  }
  async putHead(): Promise<void> {}
}

const entry = (runs: OffsetRun[]) => entryFromRuns(tp, runs, 0, 0);
const head = (standbyTopicId: string): PartitionHead => ({
  generation: 1,
  sourceTopicId: 'standby-id',
  standbyTopicId,
  standbyFloor: 0,
  since: 0,
  gaps: [],
  previous: [],
});

function setup(options: {
  kinds: Kind[];
  forward: OffsetMapEntry[];
  reverse?: OffsetMapEntry[];
  reverseHead?: PartitionHead;
  state?: ControlState['state'];
  committed?: number;
}) {
  let set: CheckpointSet = { groups: [], observations: [], at: null };
  const calls: string[] = [];
  const control: ControlState = {
    pair: 'p',
    state: options.state ?? 'MIRRORING',
    activeCluster: 'primary',
    epoch: 3,
    updatedAt: 0,
  };
  const deps: CheckpointDeps = {
    primaryAdmin: {
      listTopics: async () => [T],
      listGroups: async () => {
        calls.push('listGroups');
        return ['g'];
      },
      committedOffsets: async () => [{ topic: T, partition: 0, offset: options.committed ?? 0 }],
      topicIds: async () => new Map([[T, 'primary-id']]),
    } as unknown as CheckpointDeps['primaryAdmin'],
    standbyAdmin: {
      listTopics: async () => [T],
      groupState: async () => 'Empty',
      commitOffsets: async () => {
        calls.push('commitOffsets');
      },
    } as unknown as CheckpointDeps['standbyAdmin'],
    primaryReader: new Log(options.kinds),
    offsetMap: new FakeMap(options.forward),
    ...(options.reverse ? { counterpartMap: new FakeMap(options.reverse, options.reverseHead) } : {}),
    stateStore: {
      getControl: async () => control,
      getCheckpoints: async () => set,
      putCheckpoints: async (s: CheckpointSet & { at: number }) => {
        calls.push('putCheckpoints');
        set = s;
      },
    } as unknown as StateStore,
    selectTopic: () => true,
    selectGroup: () => true,
    logger: silentLogger,
    clock: () => 5000,
  };
  return { deps, calls, stored: () => set };
}

// After a failback: L at 0..9 (mirrored), copies at 10..19 then 21..24 (two reverse transactions, their
// markers at 20 and 25).
const kinds = (tail: Kind[] = []): Kind[] => [
  ...Array<Kind>(10).fill('record'),
  ...Array<Kind>(10).fill('copy'),
  'marker',
  ...Array<Kind>(4).fill('copy'),
  'marker',
  ...tail,
];
const forward = [entry([{ sourceStart: 0, standbyStart: 0, count: 10 }])];
const reverse = [
  entry([{ sourceStart: 11, standbyStart: 10, count: 10 }]),
  entry([{ sourceStart: 21, standbyStart: 21, count: 4 }]),
];

describe('checkpoints and the control state', () => {
  for (const state of ['FAILING_OVER', 'FAILED_OVER', 'FAILING_BACK'] as const)
    it(`reads, moves and writes nothing while ${state}`, async () => {
      const { deps, calls } = setup({ kinds: kinds(), forward, state });
      const result = await runCheckpoint(deps, { commitOnStandby: true, mirrorGroups: [] });
      expect(result.skipped).toBe(`pair p is ${state} (epoch 3): checkpoints run only while MIRRORING`);
      expect(calls).toEqual([]);
    });

  it("runs while FAILING_OVER as the failover's own checkpoint", async () => {
    const { deps, calls } = setup({ kinds: kinds(), forward, state: 'FAILING_OVER' });
    const result = await runCheckpoint(deps, {
      commitOnStandby: false,
      mirrorGroups: [],
      during: 'failover',
    });
    expect(result.skipped).toBeUndefined();
    expect(calls).toEqual(['listGroups', 'putCheckpoints']);
  });
});

describe('observations after a failback', () => {
  it('count no lag for copies and markers only: the end is where they start', async () => {
    const { deps } = setup({ kinds: kinds(), forward, reverse, reverseHead: head('primary-id') });
    const { observations } = await runCheckpoint(deps, { commitOnStandby: false, mirrorGroups: [] });
    expect(observations).toEqual([
      expect.objectContaining({
        endOffset: 10,
        lastMirrored: 9,
        firstUnmirroredTimestamp: null,
        markersOnlyTo: 26,
      }),
    ]);
    expect(unmirroredOffsets(observations[0]!)).toBe(0);
  });

  it('count what follows the copies, timed by the first record after them', async () => {
    const { deps } = setup({
      kinds: kinds(['record', 'record', 'marker', 'record']),
      forward,
      reverse,
      reverseHead: head('primary-id'),
    });
    const { observations } = await runCheckpoint(deps, { commitOnStandby: false, mirrorGroups: [] });
    expect(observations).toEqual([
      expect.objectContaining({ endOffset: 30, firstUnmirroredTimestamp: 1026, markersOnlyTo: 26 }),
    ]);
    expect(unmirroredOffsets(observations[0]!)).toBe(4);
  });

  it('trust no copies in a primary topic re-created since the failback, nor without the reverse map', async () => {
    for (const counterpart of [{ reverse, reverseHead: head('older-id') }, {}]) {
      const { deps } = setup({ kinds: kinds(), forward, ...counterpart });
      const { observations } = await runCheckpoint(deps, { commitOnStandby: false, mirrorGroups: [] });
      expect(observations[0]).toMatchObject({ endOffset: 26, firstUnmirroredTimestamp: 1010 });
      expect(unmirroredOffsets(observations[0]!)).toBe(16);
    }
  });

  it('translate a group inside the copies to the standby original', async () => {
    const { deps } = setup({
      kinds: kinds(),
      forward,
      reverse,
      reverseHead: head('primary-id'),
      committed: 13,
    });
    const { checkpoints } = await runCheckpoint(deps, { commitOnStandby: false, mirrorGroups: [] });
    expect(checkpoints).toEqual([expect.objectContaining({ sourceOffset: 13, standbyOffset: 14 })]);
  });
});
