import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import kafkajs from 'kafkajs';
import { labPaths, REPO_ROOT } from '../infra/local/paths.ts';
import { createAwsClients, destroyAwsClients } from '../src/adapters/aws/clients.ts';
import { DynamoDBOffsetMapStore } from '../src/adapters/dynamodb/offsetMapStore.ts';
import type { KdrConfig } from '../src/config.ts';
import { KDR_BIN } from '../test/helpers/cli.ts';
import { KAFKA_TOOLS, kafkaTool } from '../test/helpers/lab.ts';
import { createBenchTopic, machine, median, producerPerf, samplePeak } from './harness.ts';

/**
 * kdr next to MirrorMaker 2 (connect-mirror from the same Kafka release, dedicated mode, identity
 * replication policy) and the Kafka perf tools (the practical limit of any mirror on this machine), in one
 * run on the same lab and the same data: each tool mirrors its own copy of a topic loaded by
 * kafka-producer-perf-test. Throughput counts from the first record on the standby to the last, so a JVM's
 * or a consumer group's start-up is not charged to either. Also: replication latency at a steady rate,
 * DynamoDB requests per 1000 mirrored records (an HTTP counter in front of moto), and peak RSS.
 */

const KAFKA_LIBS = () => path.join(process.env.KAFKA_HOME ?? labPaths().kafkaCache, 'libs');

const createTopic = createBenchTopic;
const load = (config: KdrConfig, topic: string, records: number, size: number) =>
  producerPerf(config, 'primary', topic, records, size);

/** Records on the standby topic (high watermarks; `markers` per partition subtracted for kdr's commits). */
async function standbyEnd(admin: kafkajs.Admin, topic: string): Promise<number> {
  try {
    return (await admin.fetchTopicOffsets(topic)).reduce((n, o) => n + Number(o.high), 0);
  } catch {
    return 0; // not created yet
  }
}

/** End offsets of a source topic, by partition. */
async function sourceEnds(config: KdrConfig, topic: string): Promise<number[]> {
  const admin = new kafkajs.Kafka({
    brokers: config.primary.brokers,
    logLevel: kafkajs.logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic))
      .sort((a, b) => a.partition - b.partition)
      .map((o) => Number(o.high));
  } finally {
    await admin.disconnect();
  }
}

/** Times a mirror from the first record on the standby to `done()`. */
async function timeMirror(
  config: KdrConfig,
  topic: string,
  done: (end: number) => boolean | Promise<boolean>,
  limitMs: number,
): Promise<{ seconds: number }> {
  const admin = new kafkajs.Kafka({
    brokers: config.standby.brokers,
    logLevel: kafkajs.logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    const started = Date.now();
    let first: number | undefined;
    for (;;) {
      const end = await standbyEnd(admin, topic);
      if (first === undefined && end > 0) first = Date.now();
      if (first !== undefined && (await done(end))) {
        const seconds = (Date.now() - first) / 1000;
        // Everything arrived between two polls: too fast to time with this much data.
        if (seconds < 0.2)
          throw new Error(`${topic} was mirrored in ${seconds} s: load more records to time it`);
        return { seconds };
      }
      if (Date.now() - started > limitMs)
        throw new Error(`mirroring ${topic} did not finish in ${limitMs} ms`);
      // Fine-grained: a fast mirror copies a small topic in a fraction of a second.
      await sleep(10);
    }
  } finally {
    await admin.disconnect();
  }
}

/** Counts DynamoDB and S3 requests on their way to moto. */
function awsCounter(
  target: string,
): Promise<{ url: string; dynamodb: () => number; close: () => Promise<void> }> {
  const upstream = new URL(target);
  let dynamodb = 0;
  const server = http.createServer((req, res) => {
    if (String(req.headers['x-amz-target'] ?? '').startsWith('DynamoDB_')) dynamodb++;
    const forward = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({
        url: `http://127.0.0.1:${port}`,
        dynamodb: () => dynamodb,
        close: () => new Promise((r) => server.close(() => r())),
      });
    }),
  );
}

function startKdr(config: KdrConfig, topic: string, aws: string, untilCaughtUp: boolean): ChildProcess {
  return spawn(process.execPath, [KDR_BIN, 'mirror', ...(untilCaughtUp ? ['--until-caught-up'] : [])], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      KDR_PAIR: `bench-${topic}`,
      KDR_TOPICS: topic,
      KDR_MIRROR_GROUP_ID: `bench-${topic}`,
      KDR_LOG_LEVEL: 'warn',
      AWS_ENDPOINT_URL: aws,
      AWS_ACCESS_KEY_ID: config.aws.credentials?.accessKeyId ?? 'testing',
      AWS_SECRET_ACCESS_KEY: config.aws.credentials?.secretAccessKey ?? 'testing',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** MirrorMaker 2 in dedicated mode, identity replication, mirroring `topic` from primary to standby. */
function startMm2(config: KdrConfig, topic: string): { child: ChildProcess; dir: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-mm2-'));
  const props = path.join(dir, 'mm2.properties');
  writeFileSync(
    props,
    [
      'clusters = primary, standby',
      `primary.bootstrap.servers = ${config.primary.brokers.join(',')}`,
      `standby.bootstrap.servers = ${config.standby.brokers.join(',')}`,
      'primary->standby.enabled = true',
      'standby->primary.enabled = false',
      `primary->standby.topics = ${topic}`,
      'replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy',
      'replication.factor = 1',
      'checkpoints.topic.replication.factor = 1',
      'heartbeats.topic.replication.factor = 1',
      'offset-syncs.topic.replication.factor = 1',
      'offset.storage.replication.factor = 1',
      'status.storage.replication.factor = 1',
      'config.storage.replication.factor = 1',
      'sync.topic.acls.enabled = false',
      'emit.heartbeats.enabled = false',
      'tasks.max = 4',
      'refresh.topics.interval.seconds = 2',
      // Its own Connect group and internal topics per run, as kdr gets its own pair.
      `standby.group.id = mm2-${topic}`,
      `offset.storage.topic = mm2-offsets-${topic}`,
      `config.storage.topic = mm2-configs-${topic}`,
      `status.storage.topic = mm2-status-${topic}`,
    ].join('\n'),
  );
  const child = spawn(
    'java',
    [
      '-Xmx512m',
      `-Dlog4j2.configurationFile=${labPaths().toolsLog4j}`,
      '-cp',
      path.join(KAFKA_LIBS(), '*'),
      'org.apache.kafka.connect.mirror.MirrorMaker',
      props,
      '--clusters',
      'standby',
    ],
    { stdio: 'ignore' },
  );
  return { child, dir };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await exited;
}

interface ThroughputRow {
  size: number;
  records: number;
  kdr: { recordsPerSecond: number; megabytesPerSecond: number; dynamodbPer1000: number; peakRssMiB: number };
  mm2: { recordsPerSecond: number; megabytesPerSecond: number; peakRssMiB: number };
  limit: { consumerRecordsPerSecond: number; producerRecordsPerSecond: number };
}

/** The perf tools' own summary figure (records/s). */
function perfFigure(output: string, pattern: RegExp): number {
  const match = pattern.exec(output);
  if (!match) throw new Error(`no summary in the perf tool's output: ${output.slice(-400)}`);
  return Number(match[1]);
}

async function throughputRun(
  config: KdrConfig,
  size: number,
  records: number,
  run: number,
): Promise<ThroughputRow> {
  const id = `${Date.now().toString(36)}-${size}-${run}`;
  const [kdrTopic, mm2Topic, limitTopic] = ['kdr', 'mm2', 'limit'].map((t) => `cmp-${t}-${id}`) as [
    string,
    string,
    string,
  ];
  for (const t of [kdrTopic, mm2Topic]) {
    await createTopic(config, 'primary', t, 4);
    await load(config, t, records, size);
  }
  // The standby copies exist before either tool starts (both use an existing topic), so that polling
  // their offsets sees the first record arrive.
  for (const t of [limitTopic, kdrTopic, mm2Topic]) await createTopic(config, 'standby', t, 4);

  // The limit: Kafka's consumer perf tool reading one copy, its producer perf tool writing the standby.
  const consumed = await kafkaTool(KAFKA_TOOLS.consumerPerf, [
    '--bootstrap-server',
    config.primary.brokers.join(','),
    '--topic',
    kdrTopic,
    '--messages',
    String(records),
    '--timeout',
    '60000',
  ]);
  const consumerRecordsPerSecond = perfFigure(
    String(consumed.stdout),
    /^[^,\n]+, [^,]+, [\d.]+, [\d.]+, \d+, ([\d.]+)/m,
  );
  const producerRecordsPerSecond = await producerPerf(config, 'standby', limitTopic, records, size);

  // kdr: `kdr mirror --until-caught-up` as its own process; done when the offset map holds the last
  // record of every partition (the standby's offsets also count transaction markers).
  const counter = await awsCounter(config.aws.endpoint!);
  const kdr = startKdr(config, kdrTopic, counter.url, true);
  const kdrPeak = samplePeak(kdr.pid!);
  const kdrExit = new Promise<number | null>((resolve) => kdr.once('exit', (code) => resolve(code)));
  const abandon = () => kdr.exitCode === null && kdr.signalCode === null && kdr.kill('SIGKILL');
  const aws = createAwsClients(config);
  const map = new DynamoDBOffsetMapStore(
    aws.dynamodb,
    config.offsetTable,
    `bench-${kdrTopic}`,
    config.primary.alias,
  );
  const ends = await sourceEnds(config, kdrTopic);
  const kdrTime = await timeMirror(
    config,
    kdrTopic,
    async () => {
      for (const [partition, end] of ends.entries())
        if (((await map.latest({ topic: kdrTopic, partition }))?.lastSource ?? -1) < end - 1) return false;
      return true;
    },
    600_000,
  ).catch((error) => {
    abandon();
    throw error;
  });
  const code = await kdrExit;
  destroyAwsClients(aws);
  const kdrRss = kdrPeak.stop();
  await counter.close();
  if (code !== 0) throw new Error(`kdr mirror exited with ${code}`);

  // MirrorMaker 2: done when the standby has every record.
  const mm2 = startMm2(config, mm2Topic);
  const mm2Peak = samplePeak(mm2.child.pid!);
  let mm2Time: { seconds: number };
  try {
    mm2Time = await timeMirror(config, mm2Topic, (end) => end >= records, 600_000);
  } finally {
    // Never leave a MirrorMaker behind: it would load the machine for every later measurement.
    await stop(mm2.child);
  }
  const mm2Rss = mm2Peak.stop();

  const mb = (records * size) / 1e6;
  return {
    size,
    records,
    kdr: {
      recordsPerSecond: records / kdrTime.seconds,
      megabytesPerSecond: mb / kdrTime.seconds,
      dynamodbPer1000: (counter.dynamodb() * 1000) / records,
      peakRssMiB: kdrRss,
    },
    mm2: {
      recordsPerSecond: records / mm2Time.seconds,
      megabytesPerSecond: mb / mm2Time.seconds,
      peakRssMiB: mm2Rss,
    },
    limit: { consumerRecordsPerSecond, producerRecordsPerSecond },
  };
}

/** Replication latency at a steady rate: produce with timestamps, read the standby, now - timestamp. */
async function latencyRun(config: KdrConfig, tool: 'kdr' | 'mm2', rate: number, seconds: number) {
  const topic = `lat-${tool}-${Date.now().toString(36)}`;
  await createTopic(config, 'primary', topic, 4);
  const counter = tool === 'kdr' ? await awsCounter(config.aws.endpoint!) : undefined;
  const mirror =
    tool === 'kdr' ? startKdr(config, topic, counter!.url, false) : startMm2(config, topic).child;
  const primary = new kafkajs.Kafka({ brokers: config.primary.brokers, logLevel: kafkajs.logLevel.NOTHING });
  const standby = new kafkajs.Kafka({ brokers: config.standby.brokers, logLevel: kafkajs.logLevel.NOTHING });
  const producer = primary.producer({ idempotent: true });
  await producer.connect();
  // Warm-up until the mirror copies: its start-up is not latency.
  await producer.send({ topic, messages: [{ value: 'warm-up' }] });
  const admin = standby.admin();
  await admin.connect();
  for (let i = 0; (await standbyEnd(admin, topic)) === 0; i++) {
    if (i > 1200) throw new Error(`${tool} never mirrored ${topic}`);
    await sleep(100);
  }
  await admin.disconnect();
  const latencies: number[] = [];
  const consumer = standby.consumer({ groupId: `lat-${topic}`, maxWaitTimeInMs: 50, minBytes: 1 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: false });
  let measuring = false;
  await consumer.run({
    eachMessage: async ({ message }) => {
      if (measuring && message.value?.toString() !== 'warm-up')
        latencies.push(Date.now() - Number(message.timestamp));
    },
  });
  await sleep(3000); // the consumer joined and sits at the end
  measuring = true;
  const batch = Math.max(1, Math.round(rate / 20)); // every 50 ms
  const end = Date.now() + seconds * 1000;
  let sent = 0;
  while (Date.now() < end) {
    const tick = Date.now();
    await producer.send({
      topic,
      messages: Array.from({ length: batch }, (_, i) => ({ value: `r${sent + i}` })),
    });
    sent += batch;
    await sleep(Math.max(0, 50 - (Date.now() - tick)));
  }
  await sleep(5000); // the tail arrives
  await producer.disconnect();
  await consumer.disconnect();
  await stop(mirror);
  await counter?.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
  return { tool, sent, received: latencies.length, p50Ms: pct(50), p99Ms: pct(99) };
}

// KDR_BENCH_QUICK=1: one short run of each (to try the harness), not figures to quote.
const QUICK = process.env.KDR_BENCH_QUICK === '1';

export async function benchCompare(
  config: KdrConfig,
  options = QUICK
    ? {
        sizes: [
          { size: 100, records: 200_000 },
          { size: 1024, records: 50_000 },
          { size: 10_240, records: 5_000 },
        ],
        runs: 1,
        latency: { rate: 2000, seconds: 10 },
      }
    : {
        sizes: [
          { size: 100, records: 500_000 },
          { size: 1024, records: 150_000 },
          { size: 10_240, records: 15_000 },
        ],
        runs: 3,
        latency: { rate: 2000, seconds: 30 },
      },
) {
  const rows: ThroughputRow[] = [];
  for (const { size, records } of options.sizes) {
    for (let run = 0; run < options.runs; run++) {
      const row = await throughputRun(config, size, records, run);
      process.stderr.write(
        `compare ${size} B run ${run + 1}/${options.runs}: kdr ${Math.round(row.kdr.recordsPerSecond)} rec/s, MM2 ${Math.round(row.mm2.recordsPerSecond)} rec/s, consumer limit ${Math.round(row.limit.consumerRecordsPerSecond)}, producer limit ${Math.round(row.limit.producerRecordsPerSecond)}\n`,
      );
      rows.push(row);
    }
  }
  const summary = options.sizes.map(({ size, records }) => {
    const of = rows.filter((r) => r.size === size);
    const m = (f: (r: ThroughputRow) => number) => median(of.map(f));
    const limit = m((r) => Math.min(r.limit.consumerRecordsPerSecond, r.limit.producerRecordsPerSecond));
    return {
      size,
      records,
      kdrRecordsPerSecond: m((r) => r.kdr.recordsPerSecond),
      kdrMBps: m((r) => r.kdr.megabytesPerSecond),
      mm2RecordsPerSecond: m((r) => r.mm2.recordsPerSecond),
      mm2MBps: m((r) => r.mm2.megabytesPerSecond),
      limitRecordsPerSecond: limit,
      kdrOverMm2: median(of.map((r) => r.kdr.recordsPerSecond / r.mm2.recordsPerSecond)),
      kdrOverLimit: m((r) => r.kdr.recordsPerSecond) / limit,
      dynamodbPer1000: m((r) => r.kdr.dynamodbPer1000),
      kdrPeakRssMiB: m((r) => r.kdr.peakRssMiB),
      mm2PeakRssMiB: m((r) => r.mm2.peakRssMiB),
    };
  });
  const latency: Awaited<ReturnType<typeof latencyRun>>[] = [];
  for (let run = 0; run < options.runs; run++) {
    for (const tool of ['kdr', 'mm2'] as const) {
      const r = await latencyRun(config, tool, options.latency.rate, options.latency.seconds);
      process.stderr.write(
        `latency ${tool} run ${run + 1}: p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms (${r.received}/${r.sent})\n`,
      );
      latency.push(r);
    }
  }
  const lat = (tool: 'kdr' | 'mm2', k: 'p50Ms' | 'p99Ms') =>
    median(latency.filter((l) => l.tool === tool).map((l) => l[k]));
  return {
    benchmark: 'compare',
    date: new Date().toISOString(),
    machine: machine(),
    setup: {
      ...options,
      partitions: 4,
      brokersPerCluster: 1,
      mm2: 'dedicated mode, IdentityReplicationPolicy, tasks.max 4',
    },
    summary,
    latency: {
      rate: options.latency.rate,
      seconds: options.latency.seconds,
      kdr: { p50Ms: lat('kdr', 'p50Ms'), p99Ms: lat('kdr', 'p99Ms') },
      mm2: { p50Ms: lat('mm2', 'p50Ms'), p99Ms: lat('mm2', 'p99Ms') },
      runs: latency,
    },
    rows,
  };
}
