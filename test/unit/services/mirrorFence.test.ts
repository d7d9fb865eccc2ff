import { describe, expect, it } from 'vitest';
import type { PartitionHead } from '../../../src/core/generation.ts';
import type { TopicPartition } from '../../../src/core/records.ts';
import { KafkaError } from '../../../src/errors.ts';
import { silentLogger } from '../../../src/logger.ts';
import type {
  PartitionOffsets,
  PartitionReader,
  TransactionalWriter,
  TransactionalWriterFactory,
} from '../../../src/ports/kafka.ts';
import type { OffsetMapStore } from '../../../src/ports/offsetMapStore.ts';
import { MirrorEngine } from '../../../src/services/mirror.ts';

/**
 * MirrorEngine.fenceAll's bookkeeping, over stand-ins that record what it asks: which writers it opened
 * and closed, when it read heads, what one partition's failure does to the others. That fencing works
 * against Kafka and DynamoDB is the integration tests' part (failover, checkpointScale).
 */

const key = (tp: TopicPartition) => `${tp.topic}-${tp.partition}`;

interface Setup {
  /** How each open goes, by partition and attempt: 'ok', 'reject', 'throw' (synchronously). */
  open?: (tp: TopicPartition, attempt: number) => 'ok' | 'reject' | 'throw';
  closeFails?: (tp: TopicPartition) => boolean;
  offsetsFail?: (topic: string) => boolean;
}

function fenceHarness(setup: Setup = {}) {
  const events: string[] = [];
  const attempts = new Map<string, number>();
  const open = new Set<string>();
  const writers: TransactionalWriterFactory = {
    open(tp) {
      const attempt = (attempts.get(key(tp)) ?? 0) + 1;
      attempts.set(key(tp), attempt);
      const how = setup.open?.(tp, attempt) ?? 'ok';
      if (how === 'throw') throw new KafkaError('KAFKA_REQUEST_FAILED', `open ${key(tp)} threw`);
      if (how === 'reject')
        return Promise.reject(new KafkaError('KAFKA_REQUEST_FAILED', `open ${key(tp)} failed`));
      events.push(`open ${key(tp)}`);
      open.add(key(tp));
      const writer: TransactionalWriter = {
        write: async () => [],
        close: async () => {
          open.delete(key(tp));
          if (setup.closeFails?.(tp)) throw new Error(`close ${key(tp)} failed`);
        },
      };
      return Promise.resolve(writer);
    },
    openWithId: () => Promise.reject(new Error('not used')),
    close: async () => {},
  };
  const head = (tp: TopicPartition): PartitionHead => ({
    generation: tp.partition % 2 === 0 ? 1 : 2,
    sourceTopicId: null,
    standbyTopicId: null,
    standbyFloor: 0,
    since: 0,
    gaps: [],
    previous: [],
  });
  const offsetMap = {
    readHeads: async (tps: TopicPartition[]) => {
      events.push(`heads ${tps.map(key).join(',')}`);
      return tps.map(head);
    },
    head: async (tp: TopicPartition) => {
      events.push(`head ${key(tp)}`);
      return head(tp);
    },
    latest: async () => undefined,
  } as unknown as OffsetMapStore;
  const targetReader = {
    offsets: async (topic: string, partitions: number[] = []): Promise<PartitionOffsets[]> => {
      if (setup.offsetsFail?.(topic))
        throw new KafkaError('KAFKA_REQUEST_FAILED', `topic ${topic} does not exist`);
      return partitions.map((partition) => ({ partition, logStart: 0, highWatermark: 0, lastStable: 0 }));
    },
  } as unknown as PartitionReader;
  const engine = new MirrorEngine({
    sourceAlias: 'primary',
    targetAlias: 'standby',
    writers,
    targetReader,
    offsetMap,
    limits: { maxTransactionRecords: 100, maxRequestBytes: 1 << 20 },
    logger: silentLogger,
  });
  return { engine, events, open, attempts };
}

const partitionsOf = (topic: string, n: number) =>
  Array.from({ length: n }, (_, partition) => ({ topic, partition }));

describe('MirrorEngine.fenceAll', () => {
  it('reads each group of 16 heads in one request after the group is fenced, and closes every writer', async () => {
    const { engine, events, open } = fenceHarness();
    const sources = [...partitionsOf('a', 20), ...partitionsOf('b', 20)];

    const outcomes = await engine.fenceAll(sources);

    expect(outcomes.map((o) => [key(o.source), o.fenced])).toEqual(sources.map((s) => [key(s), true]));
    expect(outcomes.map((o) => (o.fenced ? o.generation : 0))).toEqual(
      sources.map((s) => (s.partition % 2 === 0 ? 1 : 2)),
    );
    const reads = events.filter((e) => e.startsWith('heads '));
    expect(reads).toHaveLength(3);
    for (const read of reads) {
      const read16 = read.slice('heads '.length).split(',');
      expect(read16.length).toBeLessThanOrEqual(16);
      for (const p of read16) expect(events.indexOf(`open ${p}`)).toBeLessThan(events.indexOf(read));
    }
    expect(events.filter((e) => e.startsWith('head '))).toEqual([]);
    expect(open.size).toBe(0);
  });

  it("one partition's failure stays its own: a rejected or throwing open, a failing close, a deleted standby topic", async () => {
    const { engine, open, attempts } = fenceHarness({
      open: (tp) => (tp.topic === 'a' && tp.partition === 3 ? 'reject' : tp.partition === 5 ? 'throw' : 'ok'),
      closeFails: (tp) => tp.partition === 7,
      offsetsFail: (topic) => topic === 'gone',
    });
    const sources = [...partitionsOf('a', 10), ...partitionsOf('gone', 4)];

    const outcomes = await engine.fenceAll(sources);

    const unfenced = outcomes.filter((o) => !o.fenced).map((o) => key(o.source));
    expect(unfenced.sort()).toEqual(['a-3', 'a-5', 'gone-0', 'gone-1', 'gone-2', 'gone-3']);
    expect(outcomes.find((o) => key(o.source) === 'a-7')?.fenced).toBe(true);
    for (const o of outcomes)
      if (!o.fenced) expect((o.error as Error).message).toMatch(/failed|threw|does not exist/);
    // Each failed partition tried once more on its own.
    expect(attempts.get('a-3')).toBe(2);
    expect(attempts.get('gone-2')).toBe(2);
    expect(attempts.get('a-0')).toBe(1);
    expect(open.size).toBe(0);
  });

  it('a partition whose group failed to open is fenced by its own retry', async () => {
    const { engine } = fenceHarness({
      open: (tp, attempt) => (tp.partition === 2 && attempt === 1 ? 'reject' : 'ok'),
    });

    const outcomes = await engine.fenceAll(partitionsOf('a', 4));

    expect(outcomes.every((o) => o.fenced)).toBe(true);
  });

  it('stops before the next group when the check throws (a lost lease), closing what it opened', async () => {
    const { engine, open, attempts } = fenceHarness();
    let groups = 0;
    const check = () => {
      if (++groups > 1) throw new Error('lease lost');
    };

    await expect(engine.fenceAll(partitionsOf('a', 64), { concurrency: 16, check })).rejects.toThrow(
      'lease lost',
    );

    expect(attempts.size).toBe(16);
    expect(open.size).toBe(0);
  });
});
