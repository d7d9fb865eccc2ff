import { afterAll, describe, expect, it } from 'vitest';
import { KafkaTransactionalWriterFactory } from '../../src/adapters/kafka/transactionalWriter.ts';
import { parseSrc, SRC_HEADER } from '../../src/core/provenance.ts';
import type { SourceRecord, TopicPartition } from '../../src/core/records.ts';
import { KdrError } from '../../src/errors.ts';
import { silentLogger } from '../../src/logger.ts';
import type {
  PartitionReader,
  TransactionalWriter,
  TransactionalWriterFactory,
} from '../../src/ports/kafka.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { MirrorEngine } from '../../src/services/mirror.ts';
import { translateOffset } from '../../src/services/translate.ts';
import { config, createTopics, kafkaFor, readWithKcat, uniqueName } from '../helpers/lab.ts';
import { fillPartitions, mirroredSourceOffsets, readPartition } from '../helpers/records.ts';

/**
 * Recovery after a crash, with offset-map entries written before their commit: an entry whose
 * transaction never committed is found and removed, a fenced writer can never record an entry after the
 * writer that fenced it, and recovery reads at most one transaction of the standby, whatever the history.
 */

const runtimes: Runtime[] = [];
function runtime(): Runtime {
  const rt = createRuntime(config, silentLogger);
  runtimes.push(rt);
  return rt;
}
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

const readAll = (rt: Runtime, tp: TopicPartition) => readPartition(rt.sourceReader, tp);

type Hook = (run: () => Promise<void>) => Promise<void>;

/** Writers whose step between "every record written" and "commit" goes through `hook`. */
function hookedWriters(rt: Runtime, hook: { current: Hook }): TransactionalWriterFactory {
  const real = new KafkaTransactionalWriterFactory(rt.targetKafka, config.pair, config.primary.alias, 'none');
  return {
    async open(source) {
      const writer = await real.open(source);
      const hooked: TransactionalWriter = {
        ...(writer.token ? { token: writer.token } : {}),
        write: (target, requests, options = {}) =>
          writer.write(target, requests, {
            ...options,
            beforeCommit: (offsets) =>
              hook.current(() => options.beforeCommit?.(offsets) ?? Promise.resolve()),
          }),
        close: () => writer.close(),
      };
      return hooked;
    },
    openWithId: (id, details) => real.openWithId(id, details),
    close: () => real.close(),
  };
}

function engine(
  rt: Runtime,
  writers: TransactionalWriterFactory,
  targetReader: PartitionReader = rt.targetReader,
  maxTransactionRecords = 100,
  fillMaxBytes?: number,
) {
  return new MirrorEngine({
    sourceReader: rt.sourceReader,
    ...(fillMaxBytes ? { fillMaxBytes } : {}),
    sourceAlias: config.primary.alias,
    targetAlias: config.standby.alias,
    writers,
    targetReader,
    offsetMap: rt.offsetMap,
    limits: { maxTransactionRecords, maxRequestBytes: 100_000 },
    logger: silentLogger,
  });
}

const passThrough: Hook = (run) => run();

/** A promise and the function that settles it: a step one writer waits for until the test says. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** Each source record once on the standby, and every offset translates to its own copy. */
async function expectExact(rt: Runtime, topic: string, records: SourceRecord[]) {
  expect(await mirroredSourceOffsets(topic, 0)).toEqual(records.map((r) => r.offset));
  const copies = new Map<number, number>();
  for (const r of await readWithKcat('standby', topic)) {
    const src = parseSrc(r.headers.find(([k]) => k === SRC_HEADER)?.[1]);
    if (src) copies.set(src.offset, r.offset);
  }
  for (const { offset } of records) {
    const t = await translateOffset(rt, { topic, partition: 0 }, offset);
    expect(t, `offset ${offset}`).toMatchObject({ exact: true, standbyOffset: copies.get(offset) });
  }
}

describe('recovery with entries written before their commit', () => {
  it('removes an entry whose transaction died before its commit, and mirrors those records once', async () => {
    const topic = uniqueName('died');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await createTopics('standby', [{ topic, numPartitions: 1 }]);
    await fillPartitions(topic, [0], 300, (_, i) => `v${i}`);
    const rt = runtime();
    const tp = { topic, partition: 0 };
    const records = await readAll(rt, tp);
    const hook = { current: passThrough };
    const mirror = engine(rt, hookedWriters(rt, hook));
    await mirror.mirrorBatch(tp, records.slice(0, 100));
    // The entry of the second transaction is written, then the process "dies" before the commit.
    hook.current = async (run) => {
      await run();
      throw new KdrError('KAFKA_UNAVAILABLE', 'killed between the entry and the commit');
    };
    await expect(mirror.mirrorBatch(tp, records.slice(100, 200))).rejects.toThrow(/killed between/);
    expect((await rt.offsetMap.latest(tp))?.lastSource).toBe(199);
    hook.current = passThrough;
    const again = engine(rt, hookedWriters(rt, hook));
    await again.mirrorBatch(tp, records.slice(100, 300));
    await again.close();
    await mirror.close();
    await expectExact(rt, topic, records);
  });

  it('never lets a fenced writer record an entry after the writer that fenced it', async () => {
    const topic = uniqueName('zombie');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await createTopics('standby', [{ topic, numPartitions: 1 }]);
    await fillPartitions(topic, [0], 300, (_, i) => `v${i}`);
    const rt = runtime();
    const tp = { topic, partition: 0 };
    const records = await readAll(rt, tp);
    // A stalls between writing its records and writing their entry (a frozen Lambda container).
    const { opened: aStalled, open: releaseA } = gate();
    const { opened: aAtHook, open: aReached } = gate();
    const zombie = engine(
      rt,
      hookedWriters(rt, {
        current: async (run) => {
          aReached();
          await aStalled;
          await run();
        },
      }),
    );
    const a = zombie.mirrorBatch(tp, records.slice(0, 100));
    await aAtHook;
    // B fences A, recovers and writes; only then does A wake up.
    const b = engine(rt, hookedWriters(rt, { current: passThrough }));
    await b.mirrorBatch(tp, records.slice(0, 150));
    releaseA();
    // A's late entry is refused (fenced); A may then take the partition back, finding everything there.
    await a.catch(() => {});
    await b.mirrorBatch(tp, records.slice(150, 300));
    await b.close();
    await zombie.close();
    await expectExact(rt, topic, records);
  });

  it("sweeps a fenced writer's entry that landed between the new writer's recovery and its first entry", async () => {
    const topic = uniqueName('sweep');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await createTopics('standby', [{ topic, numPartitions: 1 }]);
    await fillPartitions(topic, [0], 300, (_, i) => `v${i}`);
    const rt = runtime();
    const tp = { topic, partition: 0 };
    const records = await readAll(rt, tp);
    const { opened: aStalled, open: releaseA } = gate();
    const { opened: aAtHook, open: aReached } = gate();
    const { opened: aEntryWritten, open: aWrote } = gate();
    const zombie = engine(
      rt,
      hookedWriters(rt, {
        current: async (run) => {
          aReached();
          await aStalled;
          // A's entry lands (B has not written yet, so its token is still the newest written).
          await run().finally(aWrote);
          throw new KdrError('KAFKA_UNAVAILABLE', 'A dies before its commit');
        },
      }),
      rt.targetReader,
      120,
    );
    // A's transaction covers 0-119, B's first one 0-99: A's entry has a key B never writes.
    const a = zombie.mirrorBatch(tp, records.slice(0, 120)).catch(() => {});
    await aAtHook;
    const b = engine(
      rt,
      hookedWriters(rt, {
        current: async (run) => {
          // B has fenced A and recovered (nothing mirrored yet); A's entry lands now, before B's first.
          releaseA();
          await aEntryWritten;
          await run();
        },
      }),
    );
    await b.mirrorBatch(tp, records.slice(0, 300));
    await a;
    await b.close();
    await zombie.close();
    expect((await rt.offsetMap.coveringRange(tp, 0, 300)).map((e) => e.lastSource)).toEqual([99, 199, 299]);
    await expectExact(rt, topic, records);
  });

  it('reads at most one transaction of the standby to recover, however much was written after it', async () => {
    const topic = uniqueName('bounded');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await createTopics('standby', [{ topic, numPartitions: 1 }]);
    await fillPartitions(topic, [0], 200, (_, i) => `v${i}`);
    const rt = runtime();
    const tp = { topic, partition: 0 };
    const records = await readAll(rt, tp);
    const first = engine(rt, hookedWriters(rt, { current: passThrough }));
    await first.mirrorBatch(tp, records.slice(0, 100));
    await first.close();
    // Applications write the standby for a long while (a failover), far more than one transaction.
    const producer = kafkaFor('standby').producer({ idempotent: true });
    await producer.connect();
    for (let i = 0; i < 20; i++)
      await producer.send({
        topic,
        messages: Array.from({ length: 500 }, (_, j) => ({
          partition: 0,
          value: `app-${i}-${j}-${'x'.repeat(1000)}`,
        })),
      });
    await producer.disconnect();
    let read = 0;
    const counting: PartitionReader = {
      fetch: async (...args) => {
        const result = await rt.targetReader.fetch(...args);
        read += result.records.length;
        return result;
      },
      readRange: async function* (...args) {
        for await (const batch of rt.targetReader.readRange(...args)) {
          read += batch.length;
          yield batch;
        }
      },
      offsets: (...args) => rt.targetReader.offsets(...args),
      close: async () => {},
    };
    const second = engine(rt, hookedWriters(rt, { current: passThrough }), counting);
    const recovered = await second.recover(tp);
    await second.close();
    expect(recovered.lastMirrored).toBe(99);
    // Its own transaction and what one 64 KiB fetch brings along: not the 10,000 records after it.
    expect(read).toBeLessThanOrEqual(200);
  });

  it('fills a long gap a piece per delivery, in order, and mirrors the batch only after all of it', async () => {
    const topic = uniqueName('long-gap');
    await createTopics('primary', [{ topic, numPartitions: 1 }]);
    await createTopics('standby', [{ topic, numPartitions: 1 }]);
    await fillPartitions(topic, [0], 400, (_, i) => `v${i}-${'x'.repeat(200)}`);
    const rt = runtime();
    const tp = { topic, partition: 0 };
    const records = await readAll(rt, tp);
    // About 50 records' worth of gap per delivery.
    const mirror = engine(rt, hookedWriters(rt, { current: passThrough }), rt.targetReader, 100, 12_000);
    await mirror.mirrorBatch(tp, records.slice(0, 50));
    // The delivery jumps to 390 (an event source reset): 50-389 must come first, whatever it takes.
    let deliveries = 0;
    for (;;) {
      deliveries++;
      try {
        await mirror.mirrorBatch(tp, records.slice(390), { checkContinuity: deliveries === 1 });
        break;
      } catch (error) {
        expect((error as KdrError).code).toBe('BATCH_INCOMPLETE');
        expect(deliveries).toBeLessThan(20);
      }
    }
    expect(deliveries).toBeGreaterThan(3);
    await mirror.close();
    await expectExact(rt, topic, records);
  });
});
