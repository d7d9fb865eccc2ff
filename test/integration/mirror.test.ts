import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { KafkaTransactionalWriterFactory } from '../../src/adapters/kafka/transactionalWriter.ts';
import { lastHeader, parseSrc, SRC_HEADER } from '../../src/core/provenance.ts';
import type { TopicPartition } from '../../src/core/records.ts';
import { KdrError, ProducerFencedError } from '../../src/errors.ts';
import { createLogger, type Logger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { MirrorEngine } from '../../src/services/mirror.ts';
import { translateOffset } from '../../src/services/translate.ts';
import { runKdr } from '../helpers/cli.ts';
import { config, createTopics, eventually, kafkaFor, readWithKcat, uniqueName } from '../helpers/lab.ts';
import { fillPartitions, mirroredSourceOffsets, readPartition } from '../helpers/records.ts';

/** The mirror engine in-process against the lab: racing writers and exact translation. */

function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger('info', {}, { write: (line) => lines.push(line) }), lines };
}

const runtimes: Runtime[] = [];
function runtime(logger = capturingLogger().logger): Runtime {
  const rt = createRuntime(config, logger);
  runtimes.push(rt);
  return rt;
}

afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

const readAll = (rt: Runtime, tp: TopicPartition) => readPartition(rt.sourceReader, tp);

function chunks<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) =>
    items.slice(i * size, (i + 1) * size),
  );
}

/** Standby records of a partition as (source offset, standby offset) pairs, from kdr.src. */
async function standbyPairs(topic: string, partition = 0): Promise<[number, number][]> {
  const records = await readWithKcat('standby', topic, { partition });
  return records.map((r) => {
    const src = parseSrc(
      lastHeader(
        r.headers.map(([key, value]) => ({ key, value })),
        SRC_HEADER,
      ),
    )!;
    return [src.offset, r.offset];
  });
}

/** For every source offset o in [0, end): the standby offset of the first mirrored record with source >= o. */
async function expectExactTranslation(rt: Runtime, topic: string, end: number) {
  const pairs = await standbyPairs(topic);
  const tp = { topic, partition: 0 };
  let next = 0;
  for (let o = 0; o < end; o++) {
    while (next < pairs.length && pairs[next]![0] < o) next++;
    const result = await translateOffset(rt, tp, o);
    if (next < pairs.length) {
      expect(result, `source offset ${o}`).toMatchObject({
        exact: true,
        standbyOffset: pairs[next]![1],
        mirroredSourceOffset: pairs[next]![0],
      });
    } else {
      expect(result.exact, `source offset ${o}`).toBe(false);
    }
  }
  return pairs;
}

/** Every DynamoDB request the runtime sends to the offset-map table, by command name, from now on. */
function offsetTableRequests(rt: Runtime): { take: () => string[] } {
  let seen: string[] = [];
  rt.aws.dynamodb.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as {
        TableName?: string;
        TransactItems?: Record<string, { TableName?: string }>[];
        RequestItems?: Record<string, unknown>;
      };
      const tables = input.TableName
        ? [input.TableName]
        : input.RequestItems
          ? Object.keys(input.RequestItems)
          : (input.TransactItems ?? []).flatMap((item) => Object.values(item).map((op) => op.TableName));
      if (tables.includes(config.offsetTable)) seen.push(context.commandName ?? 'unknown');
      return next(args);
    },
    { step: 'initialize', name: 'countOffsetTableRequests' },
  );
  return {
    take: () => {
      const taken = seen;
      seen = [];
      return taken;
    },
  };
}

const WRITES = new Set([
  'PutItemCommand',
  'UpdateItemCommand',
  'TransactWriteItemsCommand',
  'BatchWriteItemCommand',
]);

describe('mirror engine', () => {
  it('writes the offset map at most once per partition per batch, and translates with one Query', async () => {
    const topic = uniqueName('requests');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await fillPartitions(topic, [0, 1], 1200, (partition, i) => `v${partition}-${i}`);
    const rt = runtime();
    const requests = offsetTableRequests(rt);
    for (const partition of [0, 1]) {
      const tp = { topic, partition };
      const records = await readAll(rt, tp);
      for (const batch of chunks(records, 400)) {
        requests.take();
        await rt.engine.mirrorBatch(tp, batch);
        const writes = requests.take().filter((name) => WRITES.has(name));
        expect(writes, `partition ${partition}, batch from ${batch[0]!.offset}`).toHaveLength(1);
      }
      // The same batch again (a retried event): nothing new to record, so no write at all.
      await rt.engine.mirrorBatch(tp, records.slice(0, 400));
      expect(requests.take().filter((name) => WRITES.has(name))).toEqual([]);
    }
    // One Query per translation; besides, the reverse map's head, read once and cached (it says whether
    // a failback left copies to translate through).
    let headReads = 0;
    for (const offset of [0, 399, 400, 1199]) {
      const translated = await translateOffset(rt, { topic, partition: 1 }, offset);
      expect(translated.exact).toBe(true);
      const seen = requests.take();
      expect(
        seen.filter((name) => name === 'QueryCommand'),
        `offset ${offset}`,
      ).toEqual(['QueryCommand']);
      expect(
        seen.filter((name) => name !== 'QueryCommand'),
        `offset ${offset}`,
      ).toEqual(seen.length > 1 ? ['GetItemCommand'] : []);
      headReads += seen.length - 1;
    }
    expect(headReads).toBeLessThanOrEqual(1);
    const standby = await readWithKcat('standby', topic);
    expect(standby).toHaveLength(2400);
  });

  it('prepares assigned writers ahead of their batches (heads in one BatchGetItem), opens none a rebalance gave away, and mirrors exactly once after', async () => {
    const topic = uniqueName('prep');
    const all = Array.from({ length: 12 }, (_, partition) => ({ topic, partition }));
    await createTopics('primary', [{ topic, numPartitions: all.length }]);
    await createTopics('standby', [{ topic, numPartitions: all.length }]);
    await fillPartitions(
      topic,
      all.map((tp) => tp.partition),
      7,
      (p, i) => `p${p}-r${i}`,
    );
    const rt = runtime();
    const requests = offsetTableRequests(rt);
    const real = new KafkaTransactionalWriterFactory(
      rt.targetKafka,
      config.pair,
      config.primary.alias,
      'none',
    );
    const opened: number[] = [];
    const engine = new MirrorEngine({
      sourceAlias: config.primary.alias,
      targetAlias: config.standby.alias,
      writers: {
        open: (source) => {
          opened.push(source.partition);
          return real.open(source);
        },
        openWithId: (id) => real.openWithId(id),
        close: () => real.close(),
      },
      targetReader: rt.targetReader,
      offsetMap: rt.offsetMap,
      limits: { maxTransactionRecords: 100, maxRequestBytes: 1_000_000 },
      logger: capturingLogger().logger,
    });
    const kept = all.slice(0, 6);
    try {
      // Groups of 2, two at a time: partitions 0-3 are under way when the rebalance keeps 0-5 only.
      const preparing = engine.prepare(all, 4);
      await engine.retain(kept);
      await preparing;
      expect(
        opened.filter((p) => p >= 6),
        'writers opened for partitions given away',
      ).toEqual([]);
      // Prepared once: a second prepare opens nothing. Every head was read in a batch after the fences.
      await engine.prepare(kept, 12);
      // Known, nothing mirrored yet, and when it was learned (the caught-up checks trust it for a while).
      for (const tp of kept)
        expect(engine.latestKnown(tp)).toEqual({ known: true, entry: undefined, at: expect.any(Number) });
      for (const tp of all.slice(6)) expect(engine.latestKnown(tp)).toEqual({ known: false });
      const reads = requests.take();
      expect(reads.filter((c) => c === 'GetItemCommand')).toEqual([]);
      expect(reads.filter((c) => c === 'BatchGetItemCommand').length).toBeGreaterThan(0);
      expect(opened.length).toBe(kept.length);
      const before = opened.length;
      for (const tp of kept) {
        const result = await engine.mirrorBatch(tp, await readAll(rt, tp));
        expect(result.mirrored, `${tp.partition}`).toBe(7);
      }
      // Their batches used the prepared writers.
      expect(opened.length).toBe(before);
      // Delivered again (a consumer replay): nothing doubles.
      for (const tp of kept) expect((await engine.mirrorBatch(tp, await readAll(rt, tp))).mirrored).toBe(0);
    } finally {
      await engine.close();
    }
    for (const tp of kept) {
      const standby = await readWithKcat('standby', topic, { partition: tp.partition });
      expect(standby.map((r) => r.value!.toString())).toEqual(
        Array.from({ length: 7 }, (_, i) => `p${tp.partition}-r${i}`),
      );
    }
  });

  it('lets exactly one of two racing writers of a partition write: fenced, no duplicate, no loss', async () => {
    const topic = uniqueName('race');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const producer = kafkaFor('primary').producer({ idempotent: true });
    await producer.connect();
    for (let i = 0; i < 3000; i += 500) {
      await producer.send({
        topic,
        messages: Array.from({ length: 500 }, (_, j) => ({ key: `k${i + j}`, value: `v${i + j}` })),
      });
    }
    await producer.disconnect();
    const a = capturingLogger();
    const b = capturingLogger();
    const rtA = runtime(a.logger);
    const rtB = runtime(b.logger);
    const tp = { topic, partition: 0 };
    const records = await readAll(rtA, tp);
    expect(records).toHaveLength(3000);
    let fencedFailures = 0;
    const run = async (rt: Runtime, size: number) => {
      for (const chunk of chunks(records, size)) {
        for (let attempt = 0; ; attempt++) {
          try {
            await rt.engine.mirrorBatch(tp, chunk);
            break;
          } catch (error) {
            // Fenced, or the coordinator still settling the other writer's transaction: both are retryable.
            if (!(error instanceof KdrError) || !error.retryable || attempt > 200) throw error;
            if (error instanceof ProducerFencedError) fencedFailures++;
            // As a consumer group would: the loser backs off, with jitter so the two do not stay in step.
            await sleep(20 + Math.random() * 100);
          }
        }
      }
    };
    // Different batch boundaries, so each writer keeps meeting records the other one already wrote.
    await Promise.all([run(rtA, 100), run(rtB, 70)]);
    const fenced =
      [...a.lines, ...b.lines].filter((l) => l.includes('fenced by another writer')).length + fencedFailures;
    expect(fenced).toBeGreaterThan(0);
    expect(await mirroredSourceOffsets(topic, 0)).toEqual(records.map((r) => r.offset));
  });

  it('translates every offset of a compacted topic exactly', { timeout: 240_000 }, async () => {
    const topic = uniqueName('compacted');
    await createTopics('primary', [
      {
        topic,
        numPartitions: 1,
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'segment.ms', value: '100' },
          { name: 'min.cleanable.dirty.ratio', value: '0.01' },
          { name: 'min.compaction.lag.ms', value: '0' },
          { name: 'delete.retention.ms', value: '100' },
        ],
      },
    ]);
    const producer = kafkaFor('primary').producer({ idempotent: true });
    await producer.connect();
    let n = 0;
    const rt = runtime();
    const tp = { topic, partition: 0 };
    // Overwrite 20 keys many times, rolling segments, until the cleaner has removed records.
    await eventually(
      'compaction removed records from the source',
      async () => {
        // Every third key is never written again, so cleaned segments keep records with holes between them.
        await producer.send({
          topic,
          messages: Array.from({ length: 100 }, () => {
            const i = n++;
            return { key: i % 3 === 0 ? `unique-${i}` : `k${i % 20}`, value: `v${i}` };
          }),
        });
        const [offsets] = await rt.sourceReader.offsets(topic, [0]);
        const present = await readAll(rt, tp);
        return n >= 300 && present.length < offsets!.lastStable - 50;
      },
      180_000,
    );
    await producer.disconnect();
    // The standby copy is not compacted here, so every mirrored record can be read back.
    await createTopics('standby', [{ topic, numPartitions: 1 }]);
    const engine = new MirrorEngine({
      sourceAlias: config.primary.alias,
      targetAlias: config.standby.alias,
      writers: new KafkaTransactionalWriterFactory(rt.targetKafka, config.pair, config.primary.alias, 'none'),
      targetReader: rt.targetReader,
      offsetMap: rt.offsetMap,
      limits: { maxTransactionRecords: 37, maxRequestBytes: 100_000 },
      logger: capturingLogger().logger,
    });
    const records = await readAll(rt, tp);
    const gaps = records.filter((r, i) => r.offset !== (i === 0 ? 0 : records[i - 1]!.offset + 1)).length;
    expect(gaps).toBeGreaterThan(1);
    for (const chunk of chunks(records, 50)) await engine.mirrorBatch(tp, chunk);
    await engine.close();
    const [offsets] = await rt.sourceReader.offsets(topic, [0]);
    const pairs = await expectExactTranslation(rt, topic, offsets!.lastStable);
    expect(pairs.map(([s]) => s)).toEqual(records.map((r) => r.offset));
  });

  it('translates every offset of a transactional topic with aborted transactions exactly', async () => {
    const topic = uniqueName('txn');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    const producer = kafkaFor('primary').producer({
      transactionalId: uniqueName('txn-producer'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    for (let t = 0; t < 30; t++) {
      const transaction = await producer.transaction();
      const abort = t % 3 === 1;
      await transaction.send({
        topic,
        messages: Array.from({ length: 1 + (t % 7) }, (_, i) => ({
          value: `${abort ? 'aborted' : 'committed'}-${t}-${i}`,
        })),
      });
      if (abort) await transaction.abort();
      else await transaction.commit();
    }
    await producer.disconnect();
    const rt = runtime();
    const tp = { topic, partition: 0 };
    const records = await readAll(rt, tp);
    expect(records.every((r) => r.value!.toString().startsWith('committed'))).toBe(true);
    for (const chunk of chunks(records, 9)) await rt.engine.mirrorBatch(tp, chunk);
    const standby = await readWithKcat('standby', topic);
    expect(standby.map((r) => r.value!.toString())).toEqual(records.map((r) => r.value!.toString()));
    const [offsets] = await rt.sourceReader.offsets(topic, [0]);
    await expectExactTranslation(rt, topic, offsets!.lastStable + 1);

    // The CLI prints the same, and says when an offset is beyond what is mirrored.
    const last = records.at(-1)!;
    const cli = await runKdr([
      'translate',
      '--topic',
      topic,
      '--partition',
      '0',
      '--offset',
      String(last.offset),
      '--json',
    ]);
    expect(cli.exitCode, cli.stderr).toBe(0);
    const pairs = await standbyPairs(topic);
    expect(JSON.parse(cli.stdout)).toMatchObject({
      topic,
      partition: 0,
      sourceOffset: last.offset,
      standbyOffset: pairs.at(-1)![1],
      exact: true,
    });
    const beyond = await runKdr([
      'translate',
      '--topic',
      topic,
      '--partition',
      '0',
      '--offset',
      String(offsets!.highWatermark + 5),
      '--json',
    ]);
    const [standbyOffsets] = await rt.targetReader.offsets(topic, [0]);
    expect(JSON.parse(beyond.stdout)).toMatchObject({
      exact: false,
      standbyOffset: standbyOffsets!.lastStable,
    });
    expect(JSON.parse(beyond.stdout).note).toContain('beyond what is mirrored');
    const bad = await runKdr(['translate', '--topic', topic, '--partition', '-1', '--offset', '0']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('expected a partition as a whole number >= 0, got "-1"');
  });
});
