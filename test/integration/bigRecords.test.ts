import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKdr } from '../helpers/cli.ts';
import { createTopics, kafkaFor, kcat, readWithKcat, uniqueName, withAdmin } from '../helpers/lab.ts';

/**
 * Big records (issue 11, item 4): a record the source accepted compressed must reach the standby, which
 * kdr writes uncompressed by default; one that cannot fit even compressed stops the partition with an
 * error that names it and says what to raise. Values are produced by kcat (librdkafka) with zstd, as a
 * Java or librdkafka producer would, and read back by kcat byte for byte.
 */

const { ConfigResourceTypes } = kafkajs;
// DescribeConfigs config_source 1: set on the topic itself.
const TOPIC_CONFIG = 1;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kdr-big-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Produces each value as one record with kcat, zstd-compressed, to one partition. */
async function produceFiles(topic: string, partition: number, values: Buffer[]): Promise<void> {
  const files: string[] = [];
  for (const value of values) {
    const file = path.join(dir, uniqueName('value'));
    await writeFile(file, value);
    files.push(file);
  }
  // One record per file (no delimiter parsing); librdkafka's own limit checks the uncompressed size.
  await kcat('primary', [
    '-P',
    '-t',
    topic,
    '-p',
    String(partition),
    '-z',
    'zstd',
    '-X',
    'message.max.bytes=10000000',
    ...files,
  ]);
}

const lines = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

async function produceLines(topic: string, partition: number, values: string[]): Promise<void> {
  await kcat('primary', ['-P', '-t', topic, '-p', String(partition), '-z', 'zstd'], {
    input: `${values.join('\n')}\n`,
  });
}

async function topicConfigs(cluster: 'primary' | 'standby', topic: string) {
  return withAdmin(cluster, async (admin) => {
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    });
    return resources[0]!.configEntries.map((e) => ({
      name: e.configName,
      value: e.configValue,
      explicit: (e as { configSource?: number }).configSource === TOPIC_CONFIG,
    }));
  });
}

/** Sets one config on a topic, keeping its other explicit configs (kafkajs has no incremental alter). */
async function setTopicConfig(cluster: 'primary' | 'standby', topic: string, name: string, value: string) {
  const current = (await topicConfigs(cluster, topic)).filter((c) => c.explicit && c.name !== name);
  await withAdmin(cluster, (admin) =>
    admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          type: ConfigResourceTypes.TOPIC,
          name: topic,
          configEntries: [...current.map((c) => ({ name: c.name, value: c.value })), { name, value }],
        },
      ],
    }),
  );
}

const mirror = (topic: string, timeoutMs = 150_000) =>
  runKdr(['mirror', '--topics', topic, '--until-caught-up', '--json'], {
    env: { KDR_MIRROR_GROUP_ID: uniqueName('g-big'), KDR_STANDBY_COMPRESSION: 'none' },
    timeoutMs,
  });

describe('big records', () => {
  it('mirrors a 3.5 MB record the source took zstd-compressed under its 1 MiB limit, byte-exact, exactly once', {
    timeout: 240_000,
  }, async () => {
    const topic = uniqueName('big-zstd');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    const limit = (await topicConfigs('primary', topic)).find((c) => c.name === 'max.message.bytes');
    expect(limit).toMatchObject({ value: '1048588', explicit: false });

    // Text with some variety (a counter per line): compresses ~10x, not to nothing.
    const big = Buffer.from(
      Array.from({ length: 125_000 }, (_, i) => `line ${String(i).padStart(6, '0')} of a big record\n`).join(
        '',
      ),
    );
    expect(big.length).toBeGreaterThan(3_400_000);
    const before = lines('p0-before', 20);
    const after = lines('p0-after', 20);
    const p1 = lines('p1', 30);
    await produceLines(topic, 0, before);
    await produceFiles(topic, 0, [big]);
    await produceLines(topic, 0, after);
    await produceLines(topic, 1, p1);
    const source0 = await readWithKcat('primary', topic, { partition: 0 });
    expect(source0.map((r) => r.value!.length)).toContain(big.length);

    const result = await mirror(topic);
    expect(result.exitCode, result.stderr.slice(-3000)).toBe(0);
    const summary = JSON.parse(result.stdout) as { recordsMirrored: number };
    expect(summary.recordsMirrored).toBe(before.length + 1 + after.length + p1.length);

    const standby0 = await readWithKcat('standby', topic, { partition: 0 });
    expect(standby0.map((r) => r.value!.toString())).toEqual([...before, big.toString(), ...after]);
    expect(standby0[before.length]!.value!.equals(big)).toBe(true);
    // Each copy says which source record it is: one copy per source offset.
    expect(standby0.map((r) => r.headers.find(([k]) => k === 'kdr.src')![1]!.toString())).toEqual(
      source0.map((r) => `primary/${topic}/0/${r.offset}`),
    );
    const standby1 = await readWithKcat('standby', topic, { partition: 1 });
    expect(standby1.map((r) => r.value!.toString())).toEqual(p1);
  });

  it('a record too large for the standby even compressed: exits naming topic, partition and source offset; raising the standby limit as told lets it through', {
    timeout: 300_000,
  }, async () => {
    const topic = uniqueName('big-random');
    // The source took 2 MB of random bytes while its limit was 8 MB, then the limit went back to the
    // default: the standby is created for the current limit, and no codec shrinks random bytes.
    await createTopics('primary', [
      { topic, numPartitions: 2, configEntries: [{ name: 'max.message.bytes', value: '8000000' }] },
    ]);
    const random = randomBytes(2_000_000);
    await produceLines(topic, 1, ['small-0']);
    await produceFiles(topic, 1, [random]);
    await produceLines(topic, 1, ['small-2']);
    await produceLines(topic, 0, ['p0-0', 'p0-1']);
    await setTopicConfig('primary', topic, 'max.message.bytes', '1048588');

    const failed = await mirror(topic);
    expect(failed.exitCode, failed.stderr.slice(-3000)).toBe(4);
    expect(failed.stderr).toContain(`source ${topic} partition 1 offset 1 `);
    expect(failed.stderr).toContain(`Raise max.message.bytes on the standby topic ${topic}`);
    expect(failed.stderr).toContain('takes at most 1049612 bytes');
    const error = JSON.parse(failed.stdout) as Record<string, unknown>;
    expect(error).toMatchObject({
      error: 'RECORD_TOO_LARGE',
      retryable: false,
      sourceTopic: topic,
      sourcePartition: 1,
      sourceOffset: 1,
      compression: 'zstd',
      maxMessageBytes: 1049612,
    });
    // Nothing at or after the refused record reached the standby partition (the record before it did
    // only if it came in an earlier fetch: it shares the refused record's transaction otherwise).
    const partial = (await readWithKcat('standby', topic, { partition: 1 })).map((r) => r.value!.toString());
    expect(['small-0'].slice(0, partial.length)).toEqual(partial);

    // What the message says to do works, and the next topic sync keeps the raised limit.
    await setTopicConfig('standby', topic, 'max.message.bytes', '2100000');
    const retried = await mirror(topic);
    expect(retried.exitCode, retried.stderr.slice(-3000)).toBe(0);
    const standby1 = await readWithKcat('standby', topic, { partition: 1 });
    expect(standby1).toHaveLength(3);
    expect(standby1[0]!.value!.toString()).toBe('small-0');
    expect(standby1[1]!.value!.equals(random)).toBe(true);
    expect(standby1[2]!.value!.toString()).toBe('small-2');
    const standby0 = await readWithKcat('standby', topic, { partition: 0 });
    expect(standby0.map((r) => r.value!.toString())).toEqual(['p0-0', 'p0-1']);
    const limit = (await topicConfigs('standby', topic)).find((c) => c.name === 'max.message.bytes');
    expect(limit).toMatchObject({ value: '2100000', explicit: true });
  });

  it('a 6 MB batch is mirrored while another partition on the same broker always has data', {
    timeout: 240_000,
  }, async () => {
    const topic = uniqueName('big-starve');
    // Both partitions on one broker (the lab's primary has one): every fetch carries both. kafkajs
    // shuffles them per fetch, so with the old 4 MiB partition limit p1's batch came back only when p1
    // happened to go first; now its limit covers the topic's 10 MiB and it comes back in any order.
    await createTopics('primary', [
      { topic, numPartitions: 2, configEntries: [{ name: 'max.message.bytes', value: '10485760' }] },
    ]);
    const random = randomBytes(6_000_000);
    await produceLines(topic, 0, ['p0-first']);
    await produceFiles(topic, 1, [random]);
    const producer = kafkaFor('primary').producer();
    await producer.connect();
    let feeding = true;
    let fed = 0;
    // Keeps p0 busy: every fetch finds new p0 data.
    const feeder = (async () => {
      while (feeding) {
        await producer.send({
          topic,
          messages: Array.from({ length: 5 }, () => ({ partition: 0, value: `p0-${fed++}` })),
        });
      }
    })();
    try {
      const result = await mirror(topic, 90_000);
      expect(result.exitCode, result.stderr.slice(-3000)).toBe(0);
    } finally {
      feeding = false;
      await feeder;
      await producer.disconnect();
    }
    expect(fed).toBeGreaterThan(0);
    const standby1 = await readWithKcat('standby', topic, { partition: 1 });
    expect(standby1).toHaveLength(1);
    expect(standby1[0]!.value!.equals(random)).toBe(true);
  });
});
