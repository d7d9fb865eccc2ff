import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RecordedCall } from '../../src/adapters/aws/callLog.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  config,
  createTopics,
  kafkaFor,
  readWithKcat,
  uniqueName,
} from '../helpers/lab.ts';

/**
 * Issue 15: a checkpoint's DynamoDB calls grow with partitions, not with group-partitions. Every
 * partition's head comes from a few BatchGetItem requests (it was one GetItem per partition and map),
 * and a group at or after the start of a partition's latest entry is translated from that entry alone,
 * which the observation reads anyway; only groups behind it need the range Query. Each translation is
 * checked against the records themselves, read with kcat from both clusters.
 */

const PARTITIONS = 40;

/** The offset table's calls in a call log (KDR_AWS_CALL_LOG), counted by command. */
function offsetTableCalls(callLog: string): (command: string) => number {
  const calls = readFileSync(callLog, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as RecordedCall)
    .filter(
      (c) =>
        c.input.TableName === config.offsetTable ||
        (c.input.RequestItems as string[] | undefined)?.includes(config.offsetTable),
    );
  return (command) => calls.filter((c) => c.command === `${command}Command`).length;
}

/** `kdr` with the test's environment, expected to succeed; its --json output. */
function kdrWith(env: Record<string, string>) {
  return async (args: string[], extra: Record<string, string> = {}) => {
    const result = await runKdr([...args, '--json'], { env: { ...env, ...extra } });
    expect(result.exitCode, `kdr ${args.join(' ')}: ${result.stderr.slice(-2000)}`).toBe(0);
    return JSON.parse(result.stdout);
  };
}

async function produceOn(topic: string, partitions: number, perPartition: number, label: string) {
  const producer = kafkaFor('primary').producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic,
      messages: Array.from({ length: partitions * perPartition }, (_, i) => ({
        partition: i % partitions,
        value: `${label}-${i % partitions}-${Math.floor(i / partitions)}`,
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

const produce = (topic: string, perPartition: number, label: string) =>
  produceOn(topic, PARTITIONS, perPartition, label);

describe('a checkpoint at many partitions', () => {
  it('reads heads in batches and the map once per partition, and every translation lands on the same record', async () => {
    const base = uniqueName('cps');
    const topic = `${base}-t`;
    const groups = { old: `${base}-old`, mid: `${base}-mid`, end: `${base}-end` };
    const callLog = path.join(tmpdir(), `${base}-calls.jsonl`);
    const env = {
      KDR_PAIR: `${base}-pair`,
      KDR_MIRROR_GROUP_ID: `${base}-mirror`,
      KDR_TOPICS: topic,
      KDR_GROUPS: `${base}-.*`,
    };
    const kdr = kdrWith(env);
    await createTopics('primary', [{ topic, numPartitions: PARTITIONS }]);
    // Two passes: each partition's map then has an older entry (offsets 0-9) and a latest one (10-19).
    await produce(topic, 10, 'a');
    await kdr(['mirror', '--until-caught-up']);
    await produce(topic, 10, 'b');
    await kdr(['mirror', '--until-caught-up']);
    const at = (offset: number) => Array.from({ length: PARTITIONS }, () => offset);
    // Behind the latest entry, on half the partitions only: those need a range Query, the others none.
    await commitGroupOffsets('primary', groups.old, topic, at(3).slice(0, PARTITIONS / 2));
    await commitGroupOffsets('primary', groups.mid, topic, at(14)); // inside it
    await commitGroupOffsets('primary', groups.end, topic, at(20)); // caught up: nothing beyond is mirrored

    const result = await kdr(['checkpoint'], { KDR_AWS_CALL_LOG: callLog });

    const checkpoints = result.checkpoints as {
      group: string;
      partition: number;
      sourceOffset: number;
      standbyOffset: number | null;
    }[];
    expect(checkpoints).toHaveLength(2.5 * PARTITIONS);
    const primary = await readWithKcat('primary', topic);
    const standby = await readWithKcat('standby', topic);
    const value = (records: typeof primary, partition: number, offset: number) =>
      records.find((r) => r.partition === partition && r.offset === offset)?.value?.toString();
    for (const c of checkpoints) {
      if (c.group === groups.end) {
        expect(c.standbyOffset, `${c.group} ${c.partition}`).toBeNull();
        continue;
      }
      expect(c.standbyOffset, `${c.group} ${c.partition}`).not.toBeNull();
      expect(value(standby, c.partition, c.standbyOffset!), `${c.group} ${c.partition}`).toBe(
        value(primary, c.partition, c.sourceOffset),
      );
    }

    const count = offsetTableCalls(callLog);
    // Before: a head GetItem per partition and map (80), and a range and a latest Query per partition (80).
    expect(count('GetItem')).toBe(0);
    expect(count('BatchGetItem')).toBeLessThanOrEqual(2);
    // One latest Query per partition, and a range Query where the old group is behind the latest entry.
    expect(count('Query')).toBeLessThanOrEqual(PARTITIONS + PARTITIONS / 2);
  }, 240_000);
});

describe('a planned failover at many partitions', () => {
  it("reads each partition's latest entry once before and once after the fence, heads in batches, and moves every group to the same record", async () => {
    const base = uniqueName('fos');
    const topics = [`${base}-a`, `${base}-b`];
    const groups = { mid: `${base}-mid`, end: `${base}-end` };
    const callLog = path.join(tmpdir(), `${base}-calls.jsonl`);
    const kdr = kdrWith({
      KDR_PAIR: `${base}-pair`,
      KDR_MIRROR_GROUP_ID: `${base}-mirror`,
      KDR_TOPICS: `${base}-[ab]`,
      KDR_GROUPS: `${base}-.*`,
    });
    await createTopics(
      'primary',
      topics.map((topic) => ({ topic, numPartitions: PARTITIONS / 2 })),
    );
    for (const topic of topics) await produceOn(topic, PARTITIONS / 2, 10, 'a');
    await kdr(['mirror', '--until-caught-up']);
    for (const topic of topics) {
      const at = (offset: number) => Array.from({ length: PARTITIONS / 2 }, () => offset);
      await commitGroupOffsets('primary', groups.mid, topic, at(4));
      await commitGroupOffsets('primary', groups.end, topic, at(10)); // caught up
    }

    const report = await kdr(['failover', '--planned', '--timeout', '120'], { KDR_AWS_CALL_LOG: callLog });

    const moves = report.groups as Record<
      string,
      { topic: string; partition: number; sourceOffset: number; standbyOffset: number }[]
    >;
    expect(moves[groups.mid]).toHaveLength(PARTITIONS);
    expect(moves[groups.end]).toHaveLength(PARTITIONS);
    for (const topic of topics) {
      const primary = await readWithKcat('primary', topic);
      const standby = await readWithKcat('standby', topic);
      const value = (records: typeof primary, partition: number, offset: number) =>
        records.find((r) => r.partition === partition && r.offset === offset)?.value?.toString();
      for (const m of moves[groups.mid]!.filter((m) => m.topic === topic))
        expect(value(standby, m.partition, m.standbyOffset), `${topic}-${m.partition}`).toBe(
          value(primary, m.partition, m.sourceOffset),
        );
      // Caught up: right after the partition's last record on the standby.
      for (const m of moves[groups.end]!.filter((m) => m.topic === topic)) {
        const last = Math.max(...standby.filter((r) => r.partition === m.partition).map((r) => r.offset));
        expect(m.standbyOffset, `${topic}-${m.partition}`).toBe(last + 1);
      }
    }

    const count = offsetTableCalls(callLog);
    // Before: a head GetItem per partition in the drain and another in the fence (80), and five latest
    // Queries per partition (drain twice, fence, checkpoint, moves: 200).
    expect(count('GetItem')).toBe(0);
    expect(count('BatchGetItem')).toBeLessThanOrEqual(6);
    expect(count('Query')).toBeLessThanOrEqual(2 * PARTITIONS);
  }, 240_000);
});

describe('kdr mirror --until-caught-up at many partitions', () => {
  it('calls a partition whose writer it holds caught up from the writer, with no map read, and mirrors each record once', async () => {
    const base = uniqueName('mcu');
    const topic = `${base}-t`;
    const partitions = 200;
    const callLog = path.join(tmpdir(), `${base}-calls.jsonl`);
    const kdr = kdrWith({
      KDR_PAIR: `${base}-pair`,
      KDR_MIRROR_GROUP_ID: `${base}-mirror`,
      KDR_TOPICS: topic,
    });
    await createTopics('primary', [{ topic, numPartitions: partitions }]);
    await produceOn(topic, partitions, 5, 'a');

    await kdr(['mirror', '--until-caught-up'], { KDR_AWS_CALL_LOG: callLog });

    const standby = await readWithKcat('standby', topic);
    expect(standby).toHaveLength(partitions * 5);
    expect(new Set(standby.map((r) => r.value?.toString())).size).toBe(partitions * 5);
    const count = offsetTableCalls(callLog);
    // Each partition: its recovery's latest entry and its first entry's sweep. Before, the caught-up
    // checks read the map again for partitions whose writers were held here, and for all of them before
    // the group's first assignment (a head GetItem and a latest Query each, 32 a second).
    expect(count('Query')).toBeLessThanOrEqual(2 * partitions + 10);
  }, 240_000);
});
