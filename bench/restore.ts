import type { KdrConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { restoreDeps, snapshotDeps } from '../src/operations.ts';
import { createRuntime } from '../src/runtime.ts';
import { runRestore } from '../src/services/restore.ts';
import { runSnapshot } from '../src/services/snapshot.ts';
import { createBenchTopic, machine, median, producerPerf } from './harness.ts';

/**
 * Restore throughput (records/s and MB/s from S3 segments into a new standby topic) next to the Kafka
 * producer perf tool writing the same number and size of records to the standby: the practical limit
 * of any writer on this machine. Both measured in the same run, one after the other.
 */

async function restoreRun(config: KdrConfig, records: number, size: number, partitions: number) {
  const id = Date.now().toString(36);
  const topic = `bench-restore-${id}`;
  await createBenchTopic(config, 'primary', topic, partitions);
  await createBenchTopic(config, 'standby', `limit.${topic}`, partitions);
  await producerPerf(config, 'primary', topic, records, size);
  const cfg: KdrConfig = {
    ...config,
    pair: `bench-restore-${id}`,
    topics: topic,
    snapshot: { ...config.snapshot, prefix: `bench/${id}` },
  };
  const rt = createRuntime(cfg, silentLogger);
  const snapshot = await runSnapshot(snapshotDeps(rt, 'primary'));
  await rt.close();
  if (snapshot.status !== 'complete') throw new Error('incomplete snapshot');

  const { deps, close } = restoreDeps(cfg, silentLogger, 'standby');
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    const started = performance.now();
    const result = await runRestore(deps, {
      snapshotId: snapshot.manifest.snapshotId,
      from: 'primary',
      topicPrefix: 'restored.',
      mode: 'new',
      yes: false,
      safetySnapshot: false,
      dryRun: false,
    });
    const seconds = (performance.now() - started) / 1000;
    if (result.status !== 'complete' || result.report.records !== records)
      throw new Error('incomplete restore');
    // The limit: Kafka's own producer, same records and size, same standby, right after; its own figure
    // (from its summary line), so that the JVM's start-up is not counted against it.
    const producerRecordsPerSecond = await producerPerf(config, 'standby', `limit.${topic}`, records, size);
    return {
      records,
      megabytes: (records * size) / 1e6,
      restoreRecordsPerSecond: records / seconds,
      restoreMBps: (records * size) / 1e6 / seconds,
      producerRecordsPerSecond,
      peakRssMiB: peak / 2 ** 20,
    };
  } finally {
    clearInterval(sampler);
    await close();
  }
}

export async function benchRestore(
  config: KdrConfig,
  options = { records: 100_000, size: 1024, partitions: 4, runs: 3 },
) {
  const runs: Awaited<ReturnType<typeof restoreRun>>[] = [];
  for (let i = 0; i < options.runs; i++) {
    const r = await restoreRun(config, options.records, options.size, options.partitions);
    process.stderr.write(
      `restore run ${i + 1}/${options.runs}: ${Math.round(r.restoreRecordsPerSecond)} records/s (producer tool ${Math.round(r.producerRecordsPerSecond)} records/s), peak RSS ${Math.round(r.peakRssMiB)} MiB\n`,
    );
    runs.push(r);
  }
  const med = (k: keyof Awaited<ReturnType<typeof restoreRun>>) => median(runs.map((r) => r[k] as number));
  return {
    benchmark: 'restore',
    date: new Date().toISOString(),
    machine: machine(),
    setup: { ...options, transactionRecords: config.mirror.maxTransactionRecords, prefetchSegments: 2 },
    median: {
      restoreRecordsPerSecond: med('restoreRecordsPerSecond'),
      restoreMBps: med('restoreMBps'),
      producerRecordsPerSecond: med('producerRecordsPerSecond'),
      ratio: median(runs.map((r) => r.restoreRecordsPerSecond / r.producerRecordsPerSecond)),
      peakRssMiB: med('peakRssMiB'),
    },
    runs,
  };
}
