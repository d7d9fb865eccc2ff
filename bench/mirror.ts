import { setTimeout as sleep } from 'node:timers/promises';
import { runMirrorLoop } from '../src/cli/mirrorLoop.ts';
import type { KdrConfig } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { createRuntime } from '../src/runtime.ts';
import { createBenchTopic, machine, median, producerPerf } from './harness.ts';

/**
 * Mirror throughput through the real path (`kdr mirror`'s consumer group, transactional writes, offset
 * map in DynamoDB on moto) for 1 KiB records: records/s, MB/s, and offset-map writes per batch.
 */

export interface MirrorRun {
  records: number;
  bytes: number;
  seconds: number;
  recordsPerSecond: number;
  megabytesPerSecond: number;
  batches: number;
  transactions: number;
  offsetMapWrites: number;
  offsetMapWritesPerBatch: number;
  peakRssMiB: number;
}

async function loadTopic(
  config: KdrConfig,
  topic: string,
  records: number,
  size: number,
  partitions: number,
) {
  await createBenchTopic(config, 'primary', topic, partitions);
  await producerPerf(config, 'primary', topic, records, size);
}

export async function mirrorRun(
  config: KdrConfig,
  options: { records: number; size: number; partitions: number },
): Promise<MirrorRun> {
  const topic = `bench-mirror-${Date.now().toString(36)}`;
  await loadTopic(config, topic, options.records, options.size, options.partitions);
  const runConfig: KdrConfig = {
    ...config,
    topics: topic,
    mirror: { ...config.mirror, groupId: `bench-${topic}` },
  };
  const rt = createRuntime(runConfig, createLogger('warn'));
  let offsetMapWrites = 0;
  let batches = 0;
  const put = rt.offsetMap.put.bind(rt.offsetMap);
  rt.offsetMap.put = async (entry) => {
    offsetMapWrites++;
    return put(entry);
  };
  let transactions = 0;
  const mirrorBatch = rt.engine.mirrorBatch.bind(rt.engine);
  rt.engine.mirrorBatch = async (source, records) => {
    const result = await mirrorBatch(source, records);
    batches++;
    transactions += result.transactions;
    return result;
  };
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  const started = performance.now();
  try {
    const summary = await runMirrorLoop(rt, { untilCaughtUp: true, stopped: new Promise(() => {}) });
    const seconds = (performance.now() - started) / 1000;
    const bytes = summary.recordsMirrored * options.size;
    return {
      records: summary.recordsMirrored,
      bytes,
      seconds,
      recordsPerSecond: summary.recordsMirrored / seconds,
      megabytesPerSecond: bytes / 1e6 / seconds,
      batches,
      transactions,
      offsetMapWrites,
      offsetMapWritesPerBatch: offsetMapWrites / Math.max(1, batches),
      peakRssMiB: peakRss / 2 ** 20,
    };
  } finally {
    clearInterval(sampler);
    await rt.close();
    await sleep(100);
  }
}

export async function benchMirror(
  config: KdrConfig,
  options = { records: 100_000, size: 1024, partitions: 4, runs: 3 },
) {
  const runs: MirrorRun[] = [];
  for (let i = 0; i < options.runs; i++) {
    const run = await mirrorRun(config, options);
    process.stderr.write(
      `mirror run ${i + 1}/${options.runs}: ${Math.round(run.recordsPerSecond)} records/s, ${run.megabytesPerSecond.toFixed(1)} MB/s\n`,
    );
    runs.push(run);
  }
  const med = (key: keyof MirrorRun) => median(runs.map((r) => r[key] as number));
  return {
    benchmark: 'mirror',
    date: new Date().toISOString(),
    machine: machine(),
    setup: { ...options, brokersPerCluster: 1, standbyCompression: config.standbyCompression },
    median: {
      recordsPerSecond: med('recordsPerSecond'),
      megabytesPerSecond: med('megabytesPerSecond'),
      offsetMapWritesPerBatch: med('offsetMapWritesPerBatch'),
      recordsPerBatch: median(runs.map((r) => r.records / r.batches)),
      peakRssMiB: med('peakRssMiB'),
    },
    runs,
  };
}
