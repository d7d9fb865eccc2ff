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

async function produce(topic: string, perPartition: number, label: string): Promise<void> {
  const producer = kafkaFor('primary').producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic,
      messages: Array.from({ length: PARTITIONS * perPartition }, (_, i) => ({
        partition: i % PARTITIONS,
        value: `${label}-${i % PARTITIONS}-${Math.floor(i / PARTITIONS)}`,
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

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
    const kdr = async (args: string[], extra: Record<string, string> = {}) => {
      const result = await runKdr([...args, '--json'], { env: { ...env, ...extra } });
      expect(result.exitCode, `kdr ${args.join(' ')}: ${result.stderr.slice(-2000)}`).toBe(0);
      return JSON.parse(result.stdout);
    };
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

    const calls = readFileSync(callLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as RecordedCall)
      .filter(
        (c) =>
          c.input.TableName === config.offsetTable ||
          (c.input.RequestItems as string[] | undefined)?.includes(config.offsetTable),
      );
    const count = (command: string) => calls.filter((c) => c.command === `${command}Command`).length;
    // Before: a head GetItem per partition and map (80), and a range and a latest Query per partition (80).
    expect(count('GetItem')).toBe(0);
    expect(count('BatchGetItem')).toBeLessThanOrEqual(2);
    // One latest Query per partition, and a range Query where the old group is behind the latest entry.
    expect(count('Query')).toBeLessThanOrEqual(PARTITIONS + PARTITIONS / 2);
  }, 240_000);
});
