import { describe, expect, it } from 'vitest';
import { runKdr } from '../helpers/cli.ts';
import { createTopics, kcat, uniqueName } from '../helpers/lab.ts';
import { compareClusters, edgeCaseRecord, prng, produce, type TestRecord } from '../helpers/records.ts';

/**
 * `kdr mirror` end to end: 100k records with every edge case, over topics with different partition
 * counts and source compressions (kafkajs with gzip, snappy, lz4, zstd; librdkafka with zstd and lz4),
 * checked by kcat record by record and by a checksum over both sides.
 */

const CODECS = { gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;

describe('kdr mirror', () => {
  it('copies 100k edge-case records exactly: keys, values, headers, timestamps, partitions', {
    timeout: 900_000,
  }, async () => {
    const prefix = uniqueName('m100k');
    const random = prng(20261124);
    const now = Date.now();
    // retention.ms=-1: records with timestamps at the epoch must not be deleted by time-based retention.
    const keep = [{ name: 'retention.ms', value: '-1' }];
    const layout = [
      { topic: `${prefix}-gzip`, partitions: 4, codec: CODECS.gzip, perPartition: 8000 },
      { topic: `${prefix}-snappy`, partitions: 3, codec: CODECS.snappy, perPartition: 8000 },
      { topic: `${prefix}-lz4`, partitions: 3, codec: CODECS.lz4, perPartition: 8000 },
      { topic: `${prefix}-zstd`, partitions: 2, codec: CODECS.zstd, perPartition: 8000 },
    ];
    const big = `${prefix}-big`;
    const rdkafka = `${prefix}-rdkafka`;
    await createTopics('primary', [
      ...layout.map((l) => ({ topic: l.topic, numPartitions: l.partitions, configEntries: keep })),
      // Values up to the topic's size limit: the standby copy must fit despite the provenance headers.
      {
        topic: big,
        numPartitions: 1,
        configEntries: [...keep, { name: 'max.message.bytes', value: '300000' }],
      },
      { topic: rdkafka, numPartitions: 2, configEntries: keep },
    ]);
    let total = 0;
    let n = 0;
    for (const l of layout) {
      for (let p = 0; p < l.partitions; p++) {
        const records: TestRecord[] = Array.from({ length: l.perPartition }, () =>
          edgeCaseRecord(n++, random, now),
        );
        await produce('primary', l.topic, p, records, { compression: l.codec });
        total += records.length;
      }
    }
    const bigRecords = [1, 1000, 150_000, 299_000].map((size, i) => ({
      key: Buffer.from(`big-${i}`),
      value: Buffer.alloc(size, i + 1),
      headers: [{ key: 'size', value: Buffer.from(String(size)) }],
      timestamp: now,
    }));
    await produce('primary', big, 0, bigRecords, { batch: 1 });
    total += bigRecords.length;
    for (const [partition, codec] of [
      [0, 'zstd'],
      [1, 'lz4'],
    ] as const) {
      const lines = Array.from({ length: 2000 }, (_, i) => `rdkafka-${codec}-${i}`);
      await kcat(
        'primary',
        [
          '-P',
          '-t',
          rdkafka,
          '-p',
          String(partition),
          '-K',
          ':',
          '-H',
          'from=kcat',
          '-X',
          `compression.codec=${codec}`,
        ],
        {
          input: `${lines.map((l, i) => `k${i % 13}:${l}`).join('\n')}\n`,
        },
      );
      total += lines.length;
    }
    expect(total).toBeGreaterThanOrEqual(100_000);

    const result = await runKdr(['mirror', '--until-caught-up', '--json'], {
      env: {
        KDR_TOPICS: `${prefix}-.*`,
        KDR_MIRROR_GROUP_ID: uniqueName('g'),
        KDR_STANDBY_COMPRESSION: 'lz4',
      },
      timeoutMs: 600_000,
    });
    expect(result.exitCode, result.stderr.slice(-3000)).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.recordsMirrored).toBe(total);
    expect(summary.partitions.every((p: { lagOffsets: number }) => p.lagOffsets === 0)).toBe(true);

    const comparison = await compareClusters([...layout.map((l) => l.topic), big, rdkafka]);
    expect(comparison.problems).toEqual([]);
    expect(comparison.records).toBe(total);
    expect(comparison.standbyDigest).toBe(comparison.sourceDigest);
    // Same partition count on the standby, every partition holding the same number of records.
    expect(comparison.partitions).toHaveLength(4 + 3 + 3 + 2 + 1 + 2);
    for (const p of comparison.partitions) expect(p.standby).toBe(p.source);
  });
});
