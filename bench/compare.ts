import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import kafkajs from 'kafkajs';
import { labPaths, REPO_ROOT } from '../infra/local/paths.ts';
import { createAwsClients, destroyAwsClients } from '../src/adapters/aws/clients.ts';
import { DynamoDBOffsetMapStore } from '../src/adapters/dynamodb/offsetMapStore.ts';
import type { KdrConfig } from '../src/config.ts';
import { KDR_BIN } from '../test/helpers/cli.ts';
import { KAFKA_TOOLS, kafkaTool } from '../test/helpers/lab.ts';
import { createBenchTopic, machine, median, producerPerf, samplePeak } from './harness.ts';

/**
 * kdr (one process, and `--workers 2`) next to MirrorMaker 2 (connect-mirror from the same Kafka release,
 * dedicated mode, identity replication policy; at-least-once, its default, and exactly once with
 * `exactly.once.source.support = enabled`) and the Kafka perf tools (the practical limit of any mirror on
 * this machine), in one run on the same lab and the same data: each tool mirrors its own copy of a topic
 * loaded by kafka-producer-perf-test. Throughput counts from the first record on the standby to the last,
 * so a JVM's or a consumer group's start-up is not charged to any. Also: replication latency at steady
 * rates, DynamoDB requests per 1000 mirrored records (an HTTP counter in front of moto), and peak RSS (of
 * every process of the tool).
 */

export const TOOLS = ['kdr', 'kdr-2w', 'mm2', 'mm2-eos'] as const;
export type Tool = (typeof TOOLS)[number];
export const TOOL_NAMES: Record<Tool, string> = {
  kdr: 'kdr',
  'kdr-2w': 'kdr --workers 2',
  mm2: 'MirrorMaker 2 (at-least-once)',
  'mm2-eos': 'MirrorMaker 2 (exactly once)',
};

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

/** Times a mirror from the first record on the standby to `doneAt()` once `done()` holds (default: then). */
async function timeMirror(
  config: KdrConfig,
  topic: string,
  done: (end: number) => boolean | Promise<boolean>,
  limitMs: number,
  doneAt: () => number = Date.now,
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
        const seconds = (doneAt() - first) / 1000;
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

/** Committed records of a standby topic (kcat, read_committed): markers are not records. */
async function committedRecords(config: KdrConfig, topic: string): Promise<number> {
  const { stdout } = await execa('kcat', [
    ...['-b', config.standby.brokers.join(','), '-C', '-t', topic, '-e', '-q', '-o', 'beginning'],
    ...['-X', 'isolation.level=read_committed', '-f', '.\\n'],
  ]);
  return stdout.length === 0 ? 0 : stdout.split('\n').length;
}

/**
 * For a mirror whose transaction markers count in the standby's offsets (MirrorMaker 2 exactly once): the
 * end stops moving once it is done. Timed to the end's last move; then the committed records are counted.
 */
async function timeUntilStable(
  config: KdrConfig,
  topic: string,
  records: number,
  limitMs: number,
): Promise<{ seconds: number }> {
  let lastEnd = 0;
  let lastMoveAt = 0;
  const time = await timeMirror(
    config,
    topic,
    (end) => {
      const now = Date.now();
      if (end !== lastEnd) [lastEnd, lastMoveAt] = [end, now];
      return end >= records && now - lastMoveAt >= 3000;
    },
    limitMs,
    () => lastMoveAt,
  );
  const committed = await committedRecords(config, topic);
  if (committed !== records)
    throw new Error(`${topic}: ${committed} committed records on the standby, expected ${records}`);
  return time;
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

function startKdr(
  config: KdrConfig,
  topic: string,
  aws: string,
  untilCaughtUp: boolean,
  workers = 1,
): ChildProcess {
  const args = [...(untilCaughtUp ? ['--until-caught-up'] : []), '--workers', String(workers)];
  return spawn(process.execPath, [KDR_BIN, 'mirror', ...args], {
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

/**
 * MirrorMaker 2 in dedicated mode, identity replication, mirroring `topic` from primary to standby; with
 * `exactlyOnce`, its exactly-once source support on the standby (Kafka 3.5+ dedicated mode).
 */
function startMm2(
  config: KdrConfig,
  topic: string,
  exactlyOnce = false,
): { child: ChildProcess; dir: string } {
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
      ...(exactlyOnce ? ['standby.exactly.once.source.support = enabled'] : []),
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

interface ToolFigures {
  recordsPerSecond: number;
  megabytesPerSecond: number;
  peakRssMiB: number;
  /** kdr only. */
  dynamodbPer1000?: number;
}

interface ThroughputRow {
  size: number;
  records: number;
  tools: Record<Tool, ToolFigures>;
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
  const topicOf = (t: Tool | 'limit') => `cmp-${t}-${id}`;
  for (const t of TOOLS) {
    await createTopic(config, 'primary', topicOf(t), 4);
    await load(config, topicOf(t), records, size);
  }
  // The standby copies exist before any tool starts (all use an existing topic), so that polling
  // their offsets sees the first record arrive.
  for (const t of ['limit', ...TOOLS] as const) await createTopic(config, 'standby', topicOf(t), 4);

  // The limit: Kafka's consumer perf tool reading one copy, its producer perf tool writing the standby.
  const consumed = await kafkaTool(KAFKA_TOOLS.consumerPerf, [
    '--bootstrap-server',
    config.primary.brokers.join(','),
    '--topic',
    topicOf('kdr'),
    '--messages',
    String(records),
    '--timeout',
    '60000',
  ]);
  const consumerRecordsPerSecond = perfFigure(
    String(consumed.stdout),
    /^[^,\n]+, [^,]+, [\d.]+, [\d.]+, \d+, ([\d.]+)/m,
  );
  const producerRecordsPerSecond = await producerPerf(config, 'standby', topicOf('limit'), records, size);
  const mb = (records * size) / 1e6;
  const figures = (seconds: number, peakRssMiB: number): ToolFigures => ({
    recordsPerSecond: records / seconds,
    megabytesPerSecond: mb / seconds,
    peakRssMiB,
  });
  const tools = {} as Record<Tool, ToolFigures>;
  for (const workers of [1, 2]) {
    const tool: Tool = workers === 1 ? 'kdr' : 'kdr-2w';
    const { seconds, peakRssMiB, dynamodb } = await timeKdr(config, topicOf(tool), workers);
    tools[tool] = { ...figures(seconds, peakRssMiB), dynamodbPer1000: (dynamodb * 1000) / records };
  }
  for (const exactlyOnce of [false, true]) {
    const tool: Tool = exactlyOnce ? 'mm2-eos' : 'mm2';
    const topic = topicOf(tool);
    const mm2 = startMm2(config, topic, exactlyOnce);
    const peak = samplePeak(mm2.child.pid!);
    let time: { seconds: number };
    try {
      // At least once: done when the standby has every record. Exactly once: markers count in the
      // standby's end, so done when it stops moving, with every record committed.
      time = exactlyOnce
        ? await timeUntilStable(config, topic, records, 600_000)
        : await timeMirror(config, topic, (end) => end >= records, 600_000);
    } finally {
      // Never leave a MirrorMaker behind: it would load the machine for every later measurement.
      await stop(mm2.child);
    }
    tools[tool] = figures(time.seconds, peak.stop());
  }
  return { size, records, tools, limit: { consumerRecordsPerSecond, producerRecordsPerSecond } };
}

/**
 * `kdr mirror --until-caught-up [--workers N]` as its own process; done when the offset map holds the last
 * record of every partition (the standby's offsets also count transaction markers).
 */
async function timeKdr(config: KdrConfig, topic: string, workers: number) {
  const counter = await awsCounter(config.aws.endpoint!);
  const kdr = startKdr(config, topic, counter.url, true, workers);
  const kdrPeak = samplePeak(kdr.pid!);
  const kdrExit = new Promise<number | null>((resolve) => kdr.once('exit', (code) => resolve(code)));
  const abandon = () => kdr.exitCode === null && kdr.signalCode === null && kdr.kill('SIGKILL');
  const aws = createAwsClients(config);
  const map = new DynamoDBOffsetMapStore(
    aws.dynamodb,
    config.offsetTable,
    `bench-${topic}`,
    config.primary.alias,
  );
  const ends = await sourceEnds(config, topic);
  const time = await timeMirror(
    config,
    topic,
    async () => {
      for (const [partition, end] of ends.entries())
        if (((await map.latest({ topic, partition }))?.lastSource ?? -1) < end - 1) return false;
      return true;
    },
    600_000,
  ).catch((error) => {
    abandon();
    throw error;
  });
  const code = await kdrExit;
  destroyAwsClients(aws);
  const peakRssMiB = kdrPeak.stop();
  await counter.close();
  if (code !== 0) throw new Error(`kdr mirror --workers ${workers} exited with ${code}`);
  return { seconds: time.seconds, peakRssMiB, dynamodb: counter.dynamodb() };
}

type LatencyTool = 'kdr' | 'mm2' | 'mm2-eos';
const LATENCY_TOOLS: LatencyTool[] = ['kdr', 'mm2', 'mm2-eos'];

/**
 * Replication latency at a steady rate: produce with timestamps, read the standby with read_committed (what
 * an application would see), receipt time minus the record's timestamp.
 */
async function latencyRun(config: KdrConfig, tool: LatencyTool, rate: number, seconds: number) {
  const topic = `lat-${tool}-${rate}-${Date.now().toString(36)}`;
  await createTopic(config, 'primary', topic, 4);
  const counter = tool === 'kdr' ? await awsCounter(config.aws.endpoint!) : undefined;
  const mirror =
    tool === 'kdr'
      ? startKdr(config, topic, counter!.url, false)
      : startMm2(config, topic, tool === 'mm2-eos').child;
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
  // kafkajs reads read_committed unless told otherwise.
  const consumer = standby.consumer({ groupId: `lat-${topic}`, maxWaitTimeInMs: 50, minBytes: 1 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: false });
  let measuring = false;
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const now = Date.now();
      if (!measuring) return;
      for (const message of batch.messages)
        if (message.value?.toString() !== 'warm-up') latencies.push(now - Number(message.timestamp));
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
  return {
    tool,
    rate,
    sent,
    received: latencies.length,
    p50Ms: pct(50),
    p99Ms: pct(99),
    maxMs: latencies.at(-1) ?? NaN,
  };
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
        latency: { rates: [2000, 20_000], seconds: 10 },
      }
    : {
        sizes: [
          { size: 100, records: 500_000 },
          { size: 1024, records: 150_000 },
          { size: 10_240, records: 15_000 },
        ],
        runs: 3,
        latency: { rates: [2000, 20_000], seconds: 30 },
      },
) {
  const rows: ThroughputRow[] = [];
  for (const { size, records } of options.sizes) {
    for (let run = 0; run < options.runs; run++) {
      const row = await throughputRun(config, size, records, run);
      const figures = TOOLS.map((t) => `${t} ${Math.round(row.tools[t].recordsPerSecond)}`).join(', ');
      process.stderr.write(
        `compare ${size} B run ${run + 1}/${options.runs} (records/s): ${figures}, consumer limit ${Math.round(row.limit.consumerRecordsPerSecond)}, producer limit ${Math.round(row.limit.producerRecordsPerSecond)}\n`,
      );
      rows.push(row);
    }
  }
  const summary = options.sizes.map(({ size, records }) => {
    const of = rows.filter((r) => r.size === size);
    const m = (f: (r: ThroughputRow) => number) => median(of.map(f));
    const limit = m((r) => Math.min(r.limit.consumerRecordsPerSecond, r.limit.producerRecordsPerSecond));
    const tool = (t: Tool) => ({
      recordsPerSecond: m((r) => r.tools[t].recordsPerSecond),
      megabytesPerSecond: m((r) => r.tools[t].megabytesPerSecond),
      peakRssMiB: m((r) => r.tools[t].peakRssMiB),
    });
    // Ratios are medians of each run's own ratio: the tools ran side by side within a run.
    const over = (a: Tool, b: Tool) => m((r) => r.tools[a].recordsPerSecond / r.tools[b].recordsPerSecond);
    return {
      size,
      records,
      limitRecordsPerSecond: limit,
      tools: Object.fromEntries(TOOLS.map((t) => [t, tool(t)])) as Record<Tool, ReturnType<typeof tool>>,
      kdrOverMm2: over('kdr', 'mm2'),
      kdrOverMm2Eos: over('kdr', 'mm2-eos'),
      kdr2wOverMm2: over('kdr-2w', 'mm2'),
      kdr2wOverMm2Eos: over('kdr-2w', 'mm2-eos'),
      kdrOverLimit: m((r) => r.tools.kdr.recordsPerSecond) / limit,
      dynamodbPer1000: m((r) => r.tools.kdr.dynamodbPer1000!),
    };
  });
  const latency: Awaited<ReturnType<typeof latencyRun>>[] = [];
  for (let run = 0; run < options.runs; run++) {
    for (const rate of options.latency.rates) {
      for (const tool of LATENCY_TOOLS) {
        const r = await latencyRun(config, tool, rate, options.latency.seconds);
        process.stderr.write(
          `latency ${tool} ${rate}/s run ${run + 1}: p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms (${r.received}/${r.sent})\n`,
        );
        latency.push(r);
      }
    }
  }
  const latencySummary = options.latency.rates.flatMap((rate) =>
    LATENCY_TOOLS.map((tool) => {
      const of = latency.filter((l) => l.tool === tool && l.rate === rate);
      const m = (k: 'p50Ms' | 'p99Ms' | 'maxMs') => median(of.map((l) => l[k]));
      return {
        tool,
        rate,
        p50Ms: m('p50Ms'),
        p99Ms: m('p99Ms'),
        maxMs: m('maxMs'),
        received: of.reduce((n, l) => n + l.received, 0),
        sent: of.reduce((n, l) => n + l.sent, 0),
      };
    }),
  );
  return {
    benchmark: 'compare',
    date: new Date().toISOString(),
    machine: machine(),
    setup: {
      ...options,
      partitions: 4,
      brokersPerCluster: 1,
      mm2: 'dedicated mode, IdentityReplicationPolicy, tasks.max 4; exactly once: standby.exactly.once.source.support = enabled',
    },
    summary,
    latency: { seconds: options.latency.seconds, summary: latencySummary, runs: latency },
    rows,
  };
}
