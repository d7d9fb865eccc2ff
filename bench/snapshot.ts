import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { KdrConfig } from '../src/config.ts';
import type { SegmentCompression } from '../src/core/segment.ts';
import { silentLogger } from '../src/logger.ts';
import { snapshotDeps } from '../src/operations.ts';
import { createRuntime } from '../src/runtime.ts';
import { runSnapshot } from '../src/services/snapshot.ts';
import { createBenchTopic, machine, median, producerPerf } from './harness.ts';

/**
 * Snapshot throughput (MB/s of record data read, encoded, compressed and uploaded) next to raw S3
 * PutObject throughput against the same endpoint, and the snapshot's peak RSS; once per segment
 * compression in each run, on the same topic, so that zstd and gzip are compared side by side.
 */

async function snapshotRun(
  config: KdrConfig,
  records: number,
  size: number,
  compressions: SegmentCompression[],
) {
  const id = Date.now().toString(36);
  const topic = `bench-snap-${id}`;
  await createBenchTopic(config, 'primary', topic, 4);
  await producerPerf(config, 'primary', topic, records, size);
  const byCompression: Record<string, Awaited<ReturnType<typeof snapshotOnce>>> = {};
  for (const compression of compressions) {
    const cfg: KdrConfig = {
      ...config,
      pair: `bench-snap-${id}-${compression}`,
      topics: topic,
      snapshot: { ...config.snapshot, compression, prefix: `bench/${id}/${compression}` },
    };
    byCompression[compression] = await snapshotOnce(cfg);
  }
  return byCompression;
}

async function snapshotOnce(cfg: KdrConfig) {
  const rt = createRuntime(cfg, silentLogger);
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    const baselineRss = process.memoryUsage().rss;
    const started = performance.now();
    const result = await runSnapshot(snapshotDeps(rt, 'primary'));
    const seconds = (performance.now() - started) / 1000;
    if (result.status !== 'complete') throw new Error('incomplete');
    // Raw PutObject baseline: the same number of bytes in objects of the segment size, same endpoint.
    const segment = Buffer.alloc(Math.min(cfg.snapshot.segmentBytes, result.manifest.bytes), 7);
    const putStarted = performance.now();
    let put = 0;
    for (let i = 0; put < result.manifest.bytes; i++) {
      await rt.aws.s3.send(
        new PutObjectCommand({ Bucket: cfg.bucket, Key: `${cfg.snapshot.prefix}/raw/${i}`, Body: segment }),
      );
      put += segment.length;
    }
    const putSeconds = (performance.now() - putStarted) / 1000;
    return {
      records: result.manifest.records,
      megabytes: result.manifest.bytes / 1e6,
      snapshotMBps: result.manifest.bytes / 1e6 / seconds,
      putObjectMBps: put / 1e6 / putSeconds,
      segments: result.manifest.newSegments,
      /** Stored bytes over record bytes. */
      sizeRatio: result.manifest.segments.reduce((n, s) => n + s.size, 0) / result.manifest.bytes,
      peakRssMiB: peak / 2 ** 20,
      rssGrowthMiB: (peak - baselineRss) / 2 ** 20,
    };
  } finally {
    clearInterval(sampler);
    await rt.close();
  }
}

type Run = Awaited<ReturnType<typeof snapshotOnce>>;

export async function benchSnapshot(
  config: KdrConfig,
  options = { records: 200_000, size: 1024, runs: 3, compressions: ['zstd', 'gzip'] as SegmentCompression[] },
) {
  const runs: Record<string, Run>[] = [];
  for (let i = 0; i < options.runs; i++) {
    const r = await snapshotRun(config, options.records, options.size, options.compressions);
    for (const [c, x] of Object.entries(r))
      process.stderr.write(
        `snapshot run ${i + 1}/${options.runs} (${c}): ${x.snapshotMBps.toFixed(1)} MB/s (PutObject ${x.putObjectMBps.toFixed(1)} MB/s), size ${x.sizeRatio.toFixed(3)}, peak RSS ${Math.round(x.peakRssMiB)} MiB\n`,
      );
    runs.push(r);
  }
  const medianOf = (c: SegmentCompression) => {
    const of = runs.map((r) => r[c]!);
    const med = (k: keyof Run) => median(of.map((r) => r[k] as number));
    return {
      snapshotMBps: med('snapshotMBps'),
      putObjectMBps: med('putObjectMBps'),
      ratio: median(of.map((r) => r.snapshotMBps / r.putObjectMBps)),
      sizeRatio: med('sizeRatio'),
      peakRssMiB: med('peakRssMiB'),
      rssGrowthMiB: med('rssGrowthMiB'),
    };
  };
  return {
    benchmark: 'snapshot',
    date: new Date().toISOString(),
    machine: machine(),
    setup: { ...options, partitions: 4, segmentBytes: config.snapshot.segmentBytes },
    median: Object.fromEntries(options.compressions.map((c) => [c, medianOf(c)])) as Record<
      SegmentCompression,
      ReturnType<typeof medianOf>
    >,
    runs,
  };
}
