import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { KdrConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { snapshotDeps } from '../src/operations.ts';
import { createRuntime } from '../src/runtime.ts';
import { runSnapshot } from '../src/services/snapshot.ts';
import { createBenchTopic, machine, median, producerPerf } from './harness.ts';

/**
 * Snapshot throughput (MB/s of record data read, encoded, compressed and uploaded) next to raw S3
 * PutObject throughput against the same endpoint, and the snapshot's peak RSS.
 */

async function snapshotRun(config: KdrConfig, records: number, size: number) {
  const id = Date.now().toString(36);
  const topic = `bench-snap-${id}`;
  await createBenchTopic(config, 'primary', topic, 4);
  await producerPerf(config, 'primary', topic, records, size);
  const cfg: KdrConfig = {
    ...config,
    pair: `bench-snap-${id}`,
    topics: topic,
    snapshot: { ...config.snapshot, prefix: `bench/${id}` },
  };
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
        new PutObjectCommand({ Bucket: cfg.bucket, Key: `bench/${id}/raw/${i}`, Body: segment }),
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
      peakRssMiB: peak / 2 ** 20,
      rssGrowthMiB: (peak - baselineRss) / 2 ** 20,
    };
  } finally {
    clearInterval(sampler);
    await rt.close();
  }
}

export async function benchSnapshot(config: KdrConfig, options = { records: 200_000, size: 1024, runs: 3 }) {
  const runs: Awaited<ReturnType<typeof snapshotRun>>[] = [];
  for (let i = 0; i < options.runs; i++) {
    const r = await snapshotRun(config, options.records, options.size);
    process.stderr.write(
      `snapshot run ${i + 1}/${options.runs}: ${r.snapshotMBps.toFixed(1)} MB/s (PutObject ${r.putObjectMBps.toFixed(1)} MB/s), peak RSS ${Math.round(r.peakRssMiB)} MiB\n`,
    );
    runs.push(r);
  }
  const med = (k: keyof Awaited<ReturnType<typeof snapshotRun>>) => median(runs.map((r) => r[k] as number));
  return {
    benchmark: 'snapshot',
    date: new Date().toISOString(),
    machine: machine(),
    setup: { ...options, partitions: 4, segmentBytes: config.snapshot.segmentBytes },
    median: {
      snapshotMBps: med('snapshotMBps'),
      putObjectMBps: med('putObjectMBps'),
      ratio: med('snapshotMBps') / med('putObjectMBps'),
      peakRssMiB: med('peakRssMiB'),
      rssGrowthMiB: med('rssGrowthMiB'),
    },
    runs,
  };
}
