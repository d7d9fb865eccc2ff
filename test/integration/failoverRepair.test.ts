import { afterAll, expect, it } from 'vitest';
import { KafkaTransactionalWriterFactory } from '../../src/adapters/kafka/transactionalWriter.ts';
import { loadConfig } from '../../src/config.ts';
import { KdrError } from '../../src/errors.ts';
import { silentLogger } from '../../src/logger.ts';
import { checkpointDeps, failoverDeps } from '../../src/operations.ts';
import type { TransactionalWriter, TransactionalWriterFactory } from '../../src/ports/kafka.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { runCheckpoint } from '../../src/services/checkpoint.ts';
import { failover } from '../../src/services/failover.ts';
import { MirrorEngine } from '../../src/services/mirror.ts';
import { commitGroupOffsets, createTopics, uniqueName } from '../helpers/lab.ts';
import { copiesOn, describeGroup } from '../helpers/operations.ts';
import { fillPartitions, readPartition } from '../helpers/records.ts';

/**
 * An unplanned failover after the mirror died between writing a transaction's offset-map entry and
 * committing it (a Lambda timeout, kill -9): the entry describes records the standby never got. The
 * failover fences and repairs every partition's map before it translates, so the group lands right after
 * the last record the standby has, never at a standby offset that does not exist.
 */

const topic = uniqueName('repair-t');
const group = uniqueName('repair-g');
const cfg = loadConfig({
  ...process.env,
  KDR_PAIR: uniqueName('repair-pair'),
  KDR_MIRROR_GROUP_ID: uniqueName('repair-mirror'),
  KDR_TOPICS: topic,
  KDR_GROUPS: group,
});
const runtimes: Runtime[] = [];
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

/** Writers that die after the entry of their second transaction was written, before its commit. */
function dyingWriters(rt: Runtime): TransactionalWriterFactory {
  const real = new KafkaTransactionalWriterFactory(rt.targetKafka, cfg.pair, cfg.primary.alias, 'none');
  let transactions = 0;
  return {
    async open(source) {
      const writer = await real.open(source);
      const hooked: TransactionalWriter = {
        ...(writer.token ? { token: writer.token } : {}),
        write: (target, requests, options = {}) =>
          writer.write(target, requests, {
            ...options,
            beforeCommit: async (offsets) => {
              await options.beforeCommit?.(offsets);
              if (++transactions === 2) throw new KdrError('KAFKA_UNAVAILABLE', 'killed before the commit');
            },
          }),
        close: () => writer.close(),
      };
      return hooked;
    },
    openWithId: (id, details) => real.openWithId(id, details),
    close: () => real.close(),
  };
}

it('unplanned failover repairs the map first: a group in a never-committed range lands after the last record', {
  timeout: 120_000,
}, async () => {
  await createTopics('primary', [{ topic, numPartitions: 1 }]);
  await fillPartitions(topic, [0], 200, (_, i) => `v${i}`);
  const rt = createRuntime(cfg, silentLogger);
  runtimes.push(rt);
  const tp = { topic, partition: 0 };
  const records = await readPartition(rt.sourceReader, tp);
  const mirror = new MirrorEngine({
    sourceReader: rt.sourceReader,
    sourceAlias: cfg.primary.alias,
    targetAlias: cfg.standby.alias,
    writers: dyingWriters(rt),
    targetReader: rt.targetReader,
    offsetMap: rt.offsetMap,
    limits: { maxTransactionRecords: 100, maxRequestBytes: 100_000 },
    logger: silentLogger,
    ensureTopic: async (t) => {
      await createTopics('standby', [{ topic: t, numPartitions: 1 }]);
      return undefined;
    },
  });
  await mirror.mirrorBatch(tp, records.slice(0, 100));
  await expect(mirror.mirrorBatch(tp, records.slice(100, 200))).rejects.toThrow(/killed before the commit/);
  await mirror.close();
  // The map now claims 0-199; the standby has 0-99.
  expect((await rt.offsetMap.latest(tp))?.lastSource).toBe(199);
  await commitGroupOffsets('primary', group, topic, [150]);
  const checkpoint = await runCheckpoint(checkpointDeps(rt), { commitOnStandby: false, mirrorGroups: [] });
  expect(checkpoint.checkpoints).toHaveLength(1);

  const report = await failover(failoverDeps(rt), { mode: 'unplanned', timeoutMs: 60_000 });
  const copies = await copiesOn('standby', topic, 0);
  expect(copies.map((c) => c.src)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  const last = copies.at(-1)!.offset;
  expect(report.groups[group]).toEqual([
    { topic, partition: 0, sourceOffset: 150, standbyOffset: last + 1, exact: false },
  ]);
  expect((await describeGroup('standby', group, topic)).get(0)).toBe(last + 1);
  expect((await rt.offsetMap.latest(tp))?.lastSource).toBe(99);
  // Lower bound: the observation saw the primary end at 200 and 100-199 are not on the standby.
  expect(report.rpo).toMatchObject({ known: false, records: 100 });
});
