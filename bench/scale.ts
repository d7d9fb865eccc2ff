import { execa } from 'execa';
import { KafkaAdmin } from '../src/adapters/kafka/admin.ts';
import { createKafka } from '../src/adapters/kafka/client.ts';
import type { KdrConfig } from '../src/config.ts';
import { KDR_BIN } from '../test/helpers/cli.ts';
import { machine, median, samplePeak } from './harness.ts';

/**
 * How failover, checkpoint and mirror start-up grow with partitions and consumer groups (issue 15): for
 * each size, topics of `partitionsPerTopic` partitions with a few records each, groups that each commit on
 * every partition of one topic, then, each as the user runs it in a process of its own: `kdr mirror
 * --until-caught-up` (start-up and the first pass over every partition), `kdr checkpoint`, and `kdr
 * failover --planned` (RTO from its report, with each phase's time).
 */

export interface ScaleSize {
  topics: number;
  partitionsPerTopic: number;
  groups: number;
}

export const SCALE_SIZES: ScaleSize[] = [
  { topics: 4, partitionsPerTopic: 25, groups: 40 },
  { topics: 10, partitionsPerTopic: 100, groups: 400 },
  { topics: 30, partitionsPerTopic: 100, groups: 1200 },
];

const RECORDS_PER_PARTITION = 20;

async function kdr(args: string[], env: Record<string, string>) {
  const started = Date.now();
  const child = execa(process.execPath, [KDR_BIN, ...args, '--json'], {
    env: {
      ...env,
      KDR_LOG_LEVEL: 'warn',
      ...(process.env.SCALE_CALL_LOG
        ? { KDR_AWS_CALL_LOG: `${process.env.SCALE_CALL_LOG}-${args[0]}.jsonl` }
        : {}),
    },
    reject: false,
  });
  const peak = samplePeak(child.pid!);
  const result = await child;
  const peakRssMiB = peak.stop();
  const ms = Date.now() - started;
  if (result.exitCode !== 0) throw new Error(`kdr ${args[0]} failed: ${result.stderr.slice(-3000)}`);
  return { ms, peakRssMiB, report: JSON.parse(result.stdout) };
}

async function load(config: KdrConfig, size: ScaleSize, id: string) {
  const topics = Array.from({ length: size.topics }, (_, i) => `bench-sc-${id}-${i}`);
  const kafka = createKafka(config.primary, 'kdr-bench');
  const admin = new KafkaAdmin(kafka, 'primary');
  try {
    for (const topic of topics) await admin.createTopic(topic, size.partitionsPerTopic, 1, {});
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    for (const topic of topics)
      await producer.send({
        topic,
        messages: Array.from({ length: size.partitionsPerTopic * RECORDS_PER_PARTITION }, (_, i) => ({
          partition: i % size.partitionsPerTopic,
          value: `r${i}`,
        })),
      });
    await producer.disconnect();
    // Each group on every partition of one topic, at a different offset per group and partition.
    for (let g = 0; g < size.groups; g++)
      await admin.commitOffsets(
        `bench-sc-g-${id}-${g}`,
        Array.from({ length: size.partitionsPerTopic }, (_, partition) => ({
          topic: topics[g % size.topics]!,
          partition,
          offset: (g + partition) % (RECORDS_PER_PARTITION + 1),
        })),
      );
  } finally {
    await admin.close();
  }
}

async function scaleRun(config: KdrConfig, size: ScaleSize, run: number) {
  const partitions = size.topics * size.partitionsPerTopic;
  const id = `${Date.now().toString(36)}-${partitions}-${run}`;
  const t0 = Date.now();
  await load(config, size, id);
  const loadMs = Date.now() - t0;
  const env = {
    KDR_PAIR: `bench-sc-${id}`,
    KDR_TOPICS: `bench-sc-${id}-.*`,
    KDR_GROUPS: `bench-sc-g-${id}-.*`,
  };
  const mirror = await kdr(['mirror', '--until-caught-up'], env);
  const checkpoint = await kdr(['checkpoint'], env);
  const failover = await kdr(['failover', '--planned', '--timeout', '300'], env);
  const groupPartitions = Object.values(failover.report.groups as Record<string, unknown[]>).reduce(
    (n: number, moves) => n + moves.length,
    0,
  );
  return {
    partitions,
    groups: size.groups,
    groupPartitions,
    loadMs,
    mirrorMs: mirror.ms,
    mirrorPeakRssMiB: mirror.peakRssMiB,
    checkpointMs: checkpoint.ms,
    checkpointPeakRssMiB: checkpoint.peakRssMiB,
    rtoMs: failover.report.rtoMs as number,
    failoverMs: failover.ms,
    failoverPeakRssMiB: failover.peakRssMiB,
    timings: failover.report.timings,
  };
}

export async function benchScale(config: KdrConfig, options: { runs?: number; sizes?: ScaleSize[] } = {}) {
  const runs = options.runs ?? 3;
  const sizes = [];
  for (const size of options.sizes ?? SCALE_SIZES) {
    const results: Awaited<ReturnType<typeof scaleRun>>[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await scaleRun(config, size, i);
      process.stderr.write(
        `scale ${r.partitions} partitions / ${r.groups} groups, run ${i + 1}/${runs}: RTO ${r.rtoMs} ms, checkpoint ${r.checkpointMs} ms, mirror ${r.mirrorMs} ms, timings ${JSON.stringify(r.timings)}\n`,
      );
      results.push(r);
    }
    const med = (f: (r: (typeof results)[number]) => number) => median(results.map(f));
    sizes.push({
      ...size,
      partitions: results[0]!.partitions,
      groupPartitions: results[0]!.groupPartitions,
      median: {
        rtoMs: med((r) => r.rtoMs),
        checkpointMs: med((r) => r.checkpointMs),
        mirrorMs: med((r) => r.mirrorMs),
        mirrorPeakRssMiB: med((r) => r.mirrorPeakRssMiB),
        failoverPeakRssMiB: med((r) => r.failoverPeakRssMiB),
        checkpointPeakRssMiB: med((r) => r.checkpointPeakRssMiB),
      },
      runs: results,
    });
  }
  return {
    benchmark: 'scale',
    date: new Date().toISOString(),
    machine: machine(),
    setup: { recordsPerPartition: RECORDS_PER_PARTITION, brokersPerCluster: 1, mode: 'planned' },
    sizes,
  };
}
