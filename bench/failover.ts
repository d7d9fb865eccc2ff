import { execa } from 'execa';
import { KafkaAdmin } from '../src/adapters/kafka/admin.ts';
import { createKafka } from '../src/adapters/kafka/client.ts';
import type { KdrConfig } from '../src/config.ts';
import { silentLogger } from '../src/logger.ts';
import { createRuntime } from '../src/runtime.ts';
import { KDR_BIN } from '../test/helpers/cli.ts';
import { machine, median, samplePeak } from './harness.ts';

/**
 * Planned failover RTO on the lab with 50 partitions (5 topics x 10) and 20 consumer groups, mirror
 * caught up beforehand: the time from the start of `failover` to its report, as `kdr failover --planned`
 * (its own process, so that its peak RSS is its own) reports it.
 */

async function failoverRun(config: KdrConfig, run: number) {
  const t0 = Date.now();
  const phase = (name: string) =>
    process.stderr.write(`  [${((Date.now() - t0) / 1000).toFixed(1)} s] ${name}\n`);
  const id = `${Date.now().toString(36)}-${run}`;
  const topics = Array.from({ length: 5 }, (_, i) => `bench-fo-${id}-${i}`);
  const cfg: KdrConfig = {
    ...config,
    pair: `bench-fo-${id}`,
    topics: `bench-fo-${id}-.*`,
    groups: `bench-fo-g-${id}-.*`,
  };
  const kafka = createKafka(cfg.primary, 'kdr-bench');
  const admin = new KafkaAdmin(kafka, 'primary');
  for (const topic of topics) await admin.createTopic(topic, 10, 1, {});
  const producer = kafka.producer();
  await producer.connect();
  for (const topic of topics) {
    await producer.send({
      topic,
      messages: Array.from({ length: 1000 }, (_, i) => ({ partition: i % 10, value: `r${i}` })),
    });
  }
  await producer.disconnect();
  phase('topics created and loaded');
  const groups = Array.from({ length: 20 }, (_, g) => `bench-fo-g-${id}-${g}`);
  for (const [g, group] of groups.entries()) {
    await admin.commitOffsets(
      group,
      topics.flatMap((topic) =>
        Array.from({ length: 10 }, (_, partition) => ({
          topic,
          partition,
          offset: (g * 5 + partition) % 100,
        })),
      ),
    );
  }
  await admin.close();
  phase('group offsets committed');
  const rt = createRuntime(cfg, silentLogger);
  try {
    // Caught up first: the benchmark measures the failover, not a backlog.
    for (const topic of topics) {
      for (const o of await rt.sourceReader.offsets(topic)) {
        const tp = { topic, partition: o.partition };
        const records = [];
        for await (const batch of rt.sourceReader.readRange(tp, o.logStart, o.lastStable))
          records.push(...batch);
        await rt.engine.mirrorBatch(tp, records);
      }
    }
    phase('mirror caught up');
  } finally {
    await rt.close();
  }
  const child = execa(process.execPath, [KDR_BIN, 'failover', '--planned', '--timeout', '60', '--json'], {
    env: { KDR_PAIR: cfg.pair, KDR_TOPICS: cfg.topics, KDR_GROUPS: cfg.groups, KDR_LOG_LEVEL: 'warn' },
    reject: false,
  });
  const peak = samplePeak(child.pid!);
  const result = await child;
  const peakRssMiB = peak.stop();
  if (result.exitCode !== 0) throw new Error(`kdr failover failed: ${result.stderr.slice(-2000)}`);
  const report = JSON.parse(result.stdout);
  return {
    rtoMs: report.rtoMs as number,
    peakRssMiB,
    timings: report.timings,
    groups: Object.keys(report.groups).length,
    partitions: report.rpo.partitions.length,
    rpoRecords: report.rpo.records,
  };
}

export async function benchFailover(config: KdrConfig, runs = 3) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    const r = await failoverRun(config, i);
    process.stderr.write(
      `failover run ${i + 1}/${runs}: RTO ${r.rtoMs} ms, peak RSS ${r.peakRssMiB.toFixed(0)} MiB (${r.partitions} partitions, ${r.groups} groups)\n`,
    );
    results.push(r);
  }
  return {
    benchmark: 'failover',
    date: new Date().toISOString(),
    machine: machine(),
    setup: { partitions: 50, groups: 20, mode: 'planned', brokersPerCluster: 1 },
    median: {
      rtoMs: median(results.map((r) => r.rtoMs)),
      peakRssMiB: median(results.map((r) => r.peakRssMiB)),
    },
    runs: results,
  };
}
