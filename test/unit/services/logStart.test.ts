import { describe, expect, it } from 'vitest';
import type { PartitionHead } from '../../../src/core/generation.ts';
import type { OffsetMapEntry } from '../../../src/core/offsetMap.ts';
import type { SourceRecord, TopicPartition } from '../../../src/core/records.ts';
import { KafkaError } from '../../../src/errors.ts';
import { silentLogger } from '../../../src/logger.ts';
import type { FetchResult, PartitionOffsets, PartitionReader } from '../../../src/ports/kafka.ts';
import type { OffsetMapStore } from '../../../src/ports/offsetMapStore.ts';
import type { CheckpointSet, PartitionObservation, StateStore } from '../../../src/ports/stateStore.ts';
import {
  type CheckpointDeps,
  describeGap,
  GapLog,
  type LogStartGap,
  readFromLogStart,
  runCheckpoint,
} from '../../../src/services/checkpoint.ts';
import { drain } from '../../../src/services/failover.ts';

/**
 * Reads clamped to a partition's current log start, against a fake log: what the log start passed
 * before kdr read it is a gap (reported), never an OFFSET_OUT_OF_RANGE failure.
 */

type Kind = 'record' | 'marker';

/** One partition's log: offsets from 0, of which [logStart, end) still exist. */
class FakeLog {
  kinds: Kind[] = [];
  logStart = 0;
  /** Called before every fetch (to move the log start under a read). */
  beforeFetch?: (offset: number) => void;

  append(kind: Kind, n = 1): this {
    for (let i = 0; i < n; i++) this.kinds.push(kind);
    return this;
  }
  /** A committed transaction of n records, then its marker. */
  transaction(n: number): this {
    return this.append('record', n).append('marker');
  }
  get end(): number {
    return this.kinds.length;
  }
}

const timestampOf = (offset: number) => 1_000_000 + offset;

class FakeReader implements PartitionReader {
  readonly logs = new Map<string, FakeLog>();
  fetches: number[] = [];

  log(tp: TopicPartition): FakeLog {
    const key = `${tp.topic}-${tp.partition}`;
    if (!this.logs.has(key)) this.logs.set(key, new FakeLog());
    return this.logs.get(key)!;
  }

  async fetch(tp: TopicPartition, offset: number): Promise<FetchResult> {
    const log = this.log(tp);
    log.beforeFetch?.(offset);
    this.fetches.push(offset);
    if (offset < log.logStart || offset > log.end)
      // What the Kafka adapter raises for a fetch below log start (kafkajs KafkaJSOffsetOutOfRange).
      throw new KafkaError('KAFKA_REQUEST_FAILED', `reading ${tp.topic}-${tp.partition} failed`, {
        cause: Object.assign(new Error('The requested offset is not within the range'), {
          type: 'OFFSET_OUT_OF_RANGE',
          code: 1,
        }),
      });
    // Three offsets per fetch: reads take several fetches.
    const next = Math.min(offset + 3, log.end);
    const records: SourceRecord[] = [];
    for (let o = offset; o < next; o++)
      if (log.kinds[o] === 'record')
        records.push({
          offset: o,
          timestamp: timestampOf(o),
          timestampType: 'CreateTime',
          key: null,
          value: Buffer.from(String(o)),
          headers: [],
        });
    return { records, nextOffset: next, highWatermark: log.end, lastStable: log.end, logStart: log.logStart };
  }

  async *readRange(tp: TopicPartition, from: number, to: number): AsyncGenerator<SourceRecord[]> {
    let offset = from;
    while (offset < to) {
      const result = await this.fetch(tp, offset);
      const records = result.records.filter((r) => r.offset < to);
      if (records.length > 0) yield records;
      if (result.nextOffset <= offset) return;
      offset = result.nextOffset;
    }
  }

  async offsets(topic: string, partitions?: number[]): Promise<PartitionOffsets[]> {
    const ids =
      partitions ??
      [...this.logs.keys()]
        .filter((k) => k.slice(0, k.lastIndexOf('-')) === topic)
        .map((k) => Number(k.slice(k.lastIndexOf('-') + 1)));
    return ids
      .sort((a, b) => a - b)
      .map((partition) => {
        const log = this.log({ topic, partition });
        return { partition, logStart: log.logStart, highWatermark: log.end, lastStable: log.end };
      });
  }

  async close(): Promise<void> {}
}

/** An offset map holding only each partition's last mirrored offset. */
class FakeOffsetMap implements OffsetMapStore {
  readonly last = new Map<string, number>();
  set(tp: TopicPartition, lastSource: number) {
    this.last.set(`${tp.topic}-${tp.partition}`, lastSource);
  }
  private entry(tp: TopicPartition): OffsetMapEntry | undefined {
    const lastSource = this.last.get(`${tp.topic}-${tp.partition}`);
    if (lastSource === undefined) return undefined;
    return {
      topic: tp.topic,
      partition: tp.partition,
      lastSource,
      lastStandby: lastSource,
      runs: [{ sourceStart: lastSource, standbyStart: lastSource, count: 1 }],
      lastTimestamp: timestampOf(lastSource),
      mirroredAt: 0,
    };
  }
  async put(): Promise<void> {}
  async remove(): Promise<void> {}
  async latest(tp: TopicPartition) {
    return this.entry(tp);
  }
  async covering(tp: TopicPartition, sourceOffset: number) {
    const e = this.entry(tp);
    return e && e.lastSource >= sourceOffset ? e : undefined;
  }
  async coveringRange(tp: TopicPartition) {
    const e = this.entry(tp);
    return e ? [e] : [];
  }
  async coveringStandby() {
    return undefined;
  }
  // One generation of every topic, no recorded head.
  async head(): Promise<PartitionHead | undefined> {
    return undefined;
  }
  async putHead(): Promise<void> {}
}

class FakeStateStore {
  set: CheckpointSet = { groups: [], observations: [], at: null };
  // Checkpoints run only while MIRRORING.
  async getControl() {
    return { pair: 'p', state: 'MIRRORING' as const, activeCluster: 'primary', epoch: 0, updatedAt: 0 };
  }
  async getCheckpoints() {
    return this.set;
  }
  async putCheckpoints(set: {
    groups: CheckpointSet['groups'];
    observations: PartitionObservation[];
    at: number;
  }) {
    this.set = { ...set };
  }
}

const T = 'orders';
const p0 = { topic: T, partition: 0 };
const p1 = { topic: T, partition: 1 };

function setup() {
  const reader = new FakeReader();
  const offsetMap = new FakeOffsetMap();
  const stateStore = new FakeStateStore();
  let now = 5_000;
  const deps: CheckpointDeps = {
    primaryAdmin: {
      listTopics: async () => [T],
      listGroups: async () => ['g'],
      committedOffsets: async () => [{ topic: T, partition: 0, offset: 15 }],
    } as unknown as CheckpointDeps['primaryAdmin'],
    standbyAdmin: { listTopics: async () => [T] } as unknown as CheckpointDeps['standbyAdmin'],
    primaryReader: reader,
    offsetMap,
    stateStore: stateStore as unknown as StateStore,
    selectTopic: () => true,
    selectGroup: () => true,
    logger: silentLogger,
    clock: () => now++,
  };
  const checkpoint = () => runCheckpoint(deps, { commitOnStandby: false, mirrorGroups: [] });
  return { reader, offsetMap, stateStore, deps, checkpoint };
}

const shape = (g: LogStartGap | undefined) =>
  g && { from: g.from, to: g.to, count: g.count, markersOnly: g.markersOnly ?? false };

describe('checkpoint observations clamped to log start', () => {
  it('records the deleted range as a gap and checkpoints every group instead of failing', async () => {
    const { reader, offsetMap, checkpoint } = setup();
    reader.log(p0).append('record', 30);
    reader.log(p0).logStart = 20; // DeleteRecords past what was mirrored (0..9)
    offsetMap.set(p0, 9);
    reader.log(p1).append('record', 10);
    offsetMap.set(p1, 4);
    // Never mirrored: it starts at log start, no gap (nothing says kdr should have had the rest).
    const p2 = { topic: T, partition: 2 };
    reader.log(p2).append('record', 30).logStart = 20;

    const result = await checkpoint();
    expect(result.checkpoints).toHaveLength(1);
    const [o0, o1, o2] = result.observations;
    expect(o2!.gap).toBeUndefined();
    expect(o2!.firstUnmirroredTimestamp).toBe(timestampOf(20));
    expect(shape(o0!.gap)).toEqual({ from: 10, to: 20, count: 10, markersOnly: false });
    expect(o0).toMatchObject({ endOffset: 30, lastMirrored: 9, firstUnmirroredTimestamp: timestampOf(20) });
    expect(o1!.gap).toBeUndefined();
    expect(o1!.firstUnmirroredTimestamp).toBe(timestampOf(5));
    expect(result.gaps.map(shape)).toEqual([{ from: 10, to: 20, count: 10, markersOnly: false }]);
    expect(reader.fetches).not.toContain(10);
    expect(describeGap(result.gaps[0]!, 'primary')).toBe(
      'orders-0: offsets 10-19 were deleted on primary before kdr read them; at most 10 records lost (transaction markers take offsets too)',
    );
  });

  it('follows a log start that moves between listing the offsets and the read', async () => {
    const { reader, offsetMap, checkpoint } = setup();
    reader.log(p0).append('record', 30);
    offsetMap.set(p0, 9);
    // Retention runs after the offsets were listed: the fetch at 10 finds log start at 25.
    reader.log(p0).beforeFetch = (offset) => {
      if (offset === 10) reader.log(p0).logStart = 25;
    };
    const result = await checkpoint();
    expect(shape(result.observations[0]!.gap)).toEqual({ from: 10, to: 25, count: 15, markersOnly: false });
    expect(result.observations[0]!.firstUnmirroredTimestamp).toBe(timestampOf(25));
  });

  it('an idle transactional partition: the deleted trailing marker is proven markers-only by the last checkpoint', async () => {
    const { reader, offsetMap, checkpoint } = setup();
    reader.log(p0).transaction(10).transaction(10); // records 0-9, marker 10, records 11-20, marker 21
    offsetMap.set(p0, 20);
    // Without an earlier look at offset 21, a gap there is only an upper bound.
    reader.log(p1).transaction(5);
    offsetMap.set(p1, 4);
    reader.log(p1).logStart = 6;

    const first = await checkpoint();
    expect(first.observations[0]).toMatchObject({ lastMirrored: 20, endOffset: 22, markersOnlyTo: 22 });
    expect(first.observations[0]!.gap).toBeUndefined();
    expect(shape(first.observations[1]!.gap)).toEqual({ from: 5, to: 6, count: 1, markersOnly: false });

    reader.log(p0).logStart = 22; // retention deleted everything, the marker included
    const second = await checkpoint();
    expect(shape(second.observations[0]!.gap)).toEqual({ from: 21, to: 22, count: 1, markersOnly: true });
    expect(second.observations[0]!.markersOnlyTo).toBe(22);
    expect(describeGap(second.gaps[0]!, 'primary')).toContain('nothing was lost');
    // The proof carries over to the next checkpoint.
    const third = await checkpoint();
    expect(shape(third.observations[0]!.gap)).toEqual({ from: 21, to: 22, count: 1, markersOnly: true });

    // Records deleted past a proof are not proven: the gap is an upper bound again.
    reader.log(p0).transaction(3); // records 22-24, marker 25
    reader.log(p0).logStart = 24;
    const fourth = await checkpoint();
    expect(shape(fourth.observations[0]!.gap)).toEqual({ from: 21, to: 24, count: 3, markersOnly: false });
    expect(fourth.observations[0]!.markersOnlyTo).toBeUndefined();
  });
});

describe('readFromLogStart', () => {
  it('starts at log start and continues from a log start that overtakes the read', async () => {
    const reader = new FakeReader();
    const log = reader.log(p0).append('record', 40);
    log.logStart = 5;
    log.beforeFetch = (offset) => {
      if (offset >= 11 && log.logStart < 30) log.logStart = 30;
    };
    const gaps: LogStartGap[] = [];
    const read: number[] = [];
    for await (const records of readFromLogStart(reader, p0, 2, 35, {
      onGap: (g) => gaps.push(g),
      clock: () => 1,
    }))
      read.push(...records.map((r) => r.offset));
    expect(gaps.map(shape)).toEqual([
      { from: 2, to: 5, count: 3, markersOnly: false },
      { from: 11, to: 30, count: 19, markersOnly: false },
    ]);
    expect(read).toEqual([5, 6, 7, 8, 9, 10, ...Array.from({ length: 5 }, (_, i) => 30 + i)]);
  });

  it('rethrows a failure the log start does not explain', async () => {
    const reader = new FakeReader();
    reader.log(p0).append('record', 10);
    reader.log(p0).beforeFetch = () => {
      throw new KafkaError('KAFKA_UNAVAILABLE', 'broker down');
    };
    const reading = readFromLogStart(reader, p0, 0, 10, { onGap: () => {} });
    await expect(reading.next()).rejects.toThrow('broker down');
  });
});

describe('GapLog', () => {
  const gap = (from: number, to: number, markersOnly = false): LogStartGap => ({
    topic: T,
    partition: 0,
    from,
    to,
    count: to - from,
    seenAt: from,
    ...(markersOnly ? { markersOnly } : {}),
  });

  it('merges a gap seen again, grown or adjacent; keeps others apart', () => {
    const log = new GapLog();
    log.add(gap(10, 20));
    log.add(gap(10, 20));
    log.add(gap(15, 25));
    log.add(gap(25, 27));
    log.add(gap(40, 41));
    log.add({ ...gap(0, 3), partition: 1 });
    expect(log.list().map((g) => [g.partition, g.from, g.to, g.count, g.seenAt])).toEqual([
      [0, 10, 27, 17, 10],
      [0, 40, 41, 1, 40],
      [1, 0, 3, 3, 0],
    ]);
  });

  it('keeps a proof only where proven parts cover the whole', () => {
    const a = new GapLog();
    a.add(gap(10, 11, true));
    a.add(gap(10, 11));
    expect(a.list()[0]!.markersOnly).toBe(true);
    const b = new GapLog();
    b.add(gap(10, 11, true));
    b.add(gap(10, 14));
    expect(b.list()[0]!.markersOnly).toBeUndefined();
  });
});

describe('drain clamped to log start', () => {
  function engineOver(offsetMap: FakeOffsetMap) {
    const batches: number[][] = [];
    return {
      batches,
      mirrorBatch: async (tp: TopicPartition, records: readonly SourceRecord[]) => {
        batches.push(records.map((r) => r.offset));
        offsetMap.set(tp, records.at(-1)!.offset);
        return { mirrored: records.length } as Awaited<
          ReturnType<import('../../../src/services/mirror.ts').MirrorEngine['mirrorBatch']>
        >;
      },
    };
  }
  const route = { sourceAlias: 'primary', targetAlias: 'standby' };

  it('copies what is left after the gap and reports the gap once', async () => {
    const reader = new FakeReader();
    const offsetMap = new FakeOffsetMap();
    reader.log(p0).append('record', 30).logStart = 20;
    offsetMap.set(p0, 9);
    reader.log(p1).append('record', 10);
    offsetMap.set(p1, 9);
    const engine = engineOver(offsetMap);
    const result = await drain({ engine, reader, offsetMap, route }, [p0, p1], Date.now() + 60_000, Date.now);
    expect(result.pending).toEqual([]);
    expect(result.drained).toBe(10);
    expect(engine.batches.flat()).toEqual(Array.from({ length: 10 }, (_, i) => 20 + i));
    expect(result.gaps.map(shape)).toEqual([{ from: 10, to: 20, count: 10, markersOnly: false }]);
  });

  it('a topic re-created between its offsets and its ids: the new topic is copied, never called caught up by the old map', async () => {
    const reader = new FakeReader();
    const offsetMap = new FakeOffsetMap();
    // The old topic was mirrored up to 999 (its head names its id); the new one has 5 records.
    offsetMap.set(p0, 999);
    let head: PartitionHead = {
      generation: 1,
      sourceTopicId: 'old-id',
      standbyTopicId: 'standby-id',
      standbyFloor: 0,
      since: 0,
      gaps: [],
      previous: [],
    };
    offsetMap.head = async () => head;
    reader.log(p0).append('record', 5);
    // The ids a lookup returns change once the offsets were read: the topic was re-created in between.
    let recreated = false;
    const offsets = reader.offsets.bind(reader);
    reader.offsets = async (topic, partitions) => {
      const found = await offsets(topic, partitions);
      recreated = true;
      return found;
    };
    const sourceAdmin = {
      topicIds: async (topics: string[]) =>
        new Map(topics.map((t) => [t, recreated ? 'new-id' : 'old-id'] as [string, string])),
    };
    const engine = engineOver(offsetMap);
    const mirrorBatch = engine.mirrorBatch;
    // The engine's recovery begins the new generation before it writes.
    engine.mirrorBatch = async (tp, records) => {
      head = { ...head, generation: 2, sourceTopicId: 'new-id' };
      return mirrorBatch(tp, records);
    };
    const result = await drain(
      { engine, reader, offsetMap, sourceAdmin, route },
      [p0],
      Date.now() + 60_000,
      Date.now,
    );
    expect(engine.batches.flat()).toEqual([0, 1, 2, 3, 4]);
    expect(result).toMatchObject({ pending: [], drained: 5 });
  });

  it('a gap with nothing after it: caught up at once, the gap reported', async () => {
    const reader = new FakeReader();
    const offsetMap = new FakeOffsetMap();
    reader.log(p0).transaction(10).logStart = 11; // the trailing marker deleted
    offsetMap.set(p0, 9);
    const engine = engineOver(offsetMap);
    const result = await drain({ engine, reader, offsetMap, route }, [p0], Date.now() + 60_000, Date.now);
    expect(result).toMatchObject({ pending: [], drained: 0 });
    expect(result.gaps.map(shape)).toEqual([{ from: 10, to: 11, count: 1, markersOnly: false }]);
    expect(reader.fetches).toEqual([]);
  });

  it('the log start overtaking the copy: the rest is copied from it, both parts in one gap', async () => {
    const reader = new FakeReader();
    const offsetMap = new FakeOffsetMap();
    const log = reader.log(p0).append('record', 50);
    log.logStart = 12;
    offsetMap.set(p0, 9);
    log.beforeFetch = (offset) => {
      if (offset > 12 && log.logStart < 40) log.logStart = 40;
    };
    const engine = engineOver(offsetMap);
    const result = await drain({ engine, reader, offsetMap, route }, [p0], Date.now() + 60_000, Date.now);
    expect(result.pending).toEqual([]);
    expect(engine.batches.flat()).toEqual([12, 13, 14, ...Array.from({ length: 10 }, (_, i) => 40 + i)]);
    expect(result.gaps.map(shape)).toEqual([
      { from: 10, to: 12, count: 2, markersOnly: false },
      { from: 15, to: 40, count: 25, markersOnly: false },
    ]);
  });

  it('failback direction: a floor below the standby log start is a gap; with a map entry too', async () => {
    const reader = new FakeReader();
    const offsetMap = new FakeOffsetMap();
    // p0: nothing mirrored back yet, the floor (after the last forward copy) is 10, log start 14.
    reader.log(p0).append('record', 20).logStart = 14;
    // p1: mirrored back up to 12 (an earlier, aborted failback), then the standby deleted up to 16.
    reader.log(p1).append('record', 20).logStart = 16;
    offsetMap.set(p1, 12);
    const engine = engineOver(offsetMap);
    const result = await drain(
      {
        engine,
        reader,
        offsetMap,
        route: { sourceAlias: 'standby', targetAlias: 'primary' },
        floor: async () => 10,
      },
      [p0, p1],
      Date.now() + 60_000,
      Date.now,
    );
    expect(result.pending).toEqual([]);
    expect(result.gaps.map((g) => [g.partition, g.from, g.to, g.count])).toEqual([
      [0, 10, 14, 4],
      [1, 13, 16, 3],
    ]);
    expect(engine.batches.flat()).toEqual([14, 15, 16, 17, 18, 19, 16, 17, 18, 19]);
  });
});
