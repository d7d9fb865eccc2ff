import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AttributeValue, DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import type { Admin } from 'kafkajs';
import { type Packaged, packageStack } from '../infra/aws/packageStack.ts';
import { loadStack } from '../infra/aws/stackIam.ts';
import type { KafkaEventSource } from '../infra/local/kafkaEventSource.ts';
import { LambdaLab } from '../infra/local/lambdaLab.ts';
import {
  descendants,
  ensureLambdaRuntime,
  type Invocation,
  NODE_PACKAGE,
  RIC_PACKAGE,
  RIE_VERSION,
} from '../infra/local/lambdaRuntime.ts';
import { labPaths } from '../infra/local/paths.ts';
import { createKafka } from '../src/adapters/kafka/client.ts';
import type { KdrConfig } from '../src/config.ts';
import { createBenchTopic, machine, median } from './harness.ts';

/**
 * The packaged mirror function as Lambda runs it: `sls package --stage local` with the lab's params,
 * each function in the Runtime Interface Emulator behind the lab's Lambda API, the mirror fed by the lab's
 * Kafka event source from the template's mapping (infra/local/lambdaLab.ts). For BatchSize 100, 1000 and
 * 10000: throughput on a backlog, replication latency at a steady rate, the containers' init time, AWS
 * calls per invocation (KDR_AWS_CALL_LOG) and Lambda GB-seconds per million records (RIE's REPORT lines).
 */

export interface BenchLambdaOptions {
  batchSizes: number[];
  /** Backlog per throughput run, by BatchSize. */
  records: Record<number, number>;
  size: number;
  partitions: number;
  runs: number;
  latency: { batchSize: number; windows: number[]; rate: number; seconds: number };
}

export const DEFAULT_OPTIONS: BenchLambdaOptions = {
  batchSizes: [100, 1000, 10_000],
  records: { 100: 20_000, 1000: 100_000, 10000: 100_000 },
  size: 100,
  partitions: 4,
  runs: 3,
  latency: { batchSize: 1000, windows: [1, 0], rate: 1000, seconds: 30 },
};

function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

const log = (line: string) => process.stderr.write(`[lambda] ${line}\n`);

/** One invocation of the mirror as the event source made it, seen from the lab's Lambda API. */
interface Call {
  partition: string;
  records: number;
  start: number;
  end: number;
  outcome: Invocation['outcome'] | 'throttled' | 'not-found';
  mirrored: number;
}

/** A REPORT line of RIE and the init reports of one container's log. */
interface Report {
  durationMs: number;
  billedMs: number;
  memoryMb: number;
  reportInitMs?: number;
}

interface ContainerLog {
  file: string;
  /** `INIT REPORT(durationMs: X)`: how long the runtime's init took (RIE's REPORT line shows 0.03 ms). */
  initMs: number[];
  reports: Report[];
}

export function parseContainerLog(file: string, text: string): ContainerLog {
  const initMs = [...text.matchAll(/INIT REPORT\(durationMs: ([\d.]+)\)/g)].map((m) => Number(m[1]));
  const reports: Report[] = [];
  for (const m of text.matchAll(/^REPORT RequestId: .*$/gm)) {
    // Tab-separated "Name: value unit" fields ("Init Duration" and "Billed Duration" both end in "Duration").
    const fields = new Map(
      m[0].split('\t').flatMap((f) => {
        const kv = /^\s*([A-Za-z ]+): ([\d.]+)/.exec(f);
        return kv ? [[kv[1]!.trim(), Number(kv[2])] as const] : [];
      }),
    );
    const reportInitMs = fields.get('Init Duration');
    reports.push({
      durationMs: fields.get('Duration') ?? 0,
      billedMs: fields.get('Billed Duration') ?? 0,
      memoryMb: fields.get('Memory Size') ?? 0,
      ...(reportInitMs !== undefined ? { reportInitMs } : {}),
    });
  }
  return { file, initMs, reports };
}

function containerLogs(dir: string, fn: string): ContainerLog[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.startsWith(`lambda-${fn}-`))
    .map((f) => parseContainerLog(f, readFileSync(path.join(dir, f), 'utf8')));
}

interface RecordedCall {
  function: string | null;
  client: string;
  command: string;
  input: { TableName?: string; IndexName?: string; TransactItems?: Record<string, string | undefined>[] };
}

function readCallLog(file: string): RecordedCall[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as RecordedCall);
}

/**
 * DynamoDB on-demand request units of the calls, by AWS's rules for items of at most 1 KB (writes) and
 * 4 KB (reads), which the bench checks on the items it wrote (maxItemBytes): a strongly consistent read
 * (GetItem, Query) is 1 read unit; a standard write 1 write unit; each item of TransactWriteItems 2 write
 * units; an item written to the offset table, which has a global secondary index projecting ALL on the
 * standby offset, 1 more write unit for the index (counted for every PutItem and the first item of each
 * TransactWriteItems on that table: the entry; the head and writer items have no `ls` and stay out of it;
 * a transaction doubles the base table's units only). Units: https://aws.amazon.com/dynamodb/pricing/on-demand/;
 * index writes at 1x within transactions: AWS's DynamoDB cost calculator,
 * https://github.com/aws/agent-toolkit-for-aws (skills/.../amazon-dynamodb/scripts/calculate_costs.py).
 */
export function requestUnits(calls: RecordedCall[], offsetTable: string) {
  let read = 0;
  let write = 0;
  let indexWrites = 0;
  for (const c of calls) {
    if (c.client !== 'DynamoDBClient') continue;
    switch (c.command) {
      case 'GetItemCommand':
      case 'QueryCommand':
        // kdr reads strongly consistent, except from a global secondary index (eventually consistent).
        read += c.input.IndexName ? 0.5 : 1;
        break;
      case 'PutItemCommand':
      case 'UpdateItemCommand':
      case 'DeleteItemCommand':
        write += 1;
        if (c.command === 'PutItemCommand' && c.input.TableName === offsetTable) indexWrites += 1;
        break;
      case 'TransactWriteItemsCommand': {
        const items = c.input.TransactItems ?? [];
        write += 2 * items.length;
        const first = items[0];
        if (first && Object.values(first)[0] === offsetTable) indexWrites += 1;
        break;
      }
      default:
        // BatchWriteItem, Scan, ...: counted in byCommand; none is expected of the mirror.
        break;
    }
  }
  return { read, write: write + indexWrites, indexWrites };
}

function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

/** DynamoDB's item size: attribute names plus values (numbers counted as their digits, an overestimate). */
function itemBytes(item: Record<string, AttributeValue>): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item)) {
    bytes += Buffer.byteLength(name);
    if (value.S !== undefined) bytes += Buffer.byteLength(value.S);
    else if (value.N !== undefined) bytes += value.N.length;
    else bytes += Buffer.byteLength(JSON.stringify(value));
  }
  return bytes;
}

/** The offset-map items one run wrote (its pair and topic), read back from moto: how many, how large. */
async function offsetMapItems(config: KdrConfig, pair: string, topic: string, partitions: number) {
  const client = new DynamoDBClient({
    region: config.aws.region,
    endpoint: config.aws.endpoint!,
    credentials: config.aws.credentials!,
  });
  const sizes: number[] = [];
  try {
    for (let p = 0; p < partitions; p++) {
      for (const suffix of ['', '#head', '#writer']) {
        let start: Record<string, AttributeValue> | undefined;
        do {
          const page = await client.send(
            new QueryCommand({
              TableName: config.offsetTable,
              KeyConditionExpression: 'p = :p',
              ExpressionAttributeValues: {
                ':p': { S: `${pair}#${config.primary.alias}#${topic}#${p}${suffix}` },
              },
              ...(start ? { ExclusiveStartKey: start } : {}),
            }),
          );
          for (const item of page.Items ?? []) sizes.push(itemBytes(item));
          start = page.LastEvaluatedKey;
        } while (start);
      }
    }
  } finally {
    client.destroy();
  }
  return { items: sizes.length, maxItemBytes: Math.max(0, ...sizes), medianItemBytes: median(sizes) };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** One package of the stack per setting: one mapping per topic, of which each run starts only its own. */
class Packages {
  private built = false;
  readonly seconds: number[] = [];

  async make(topics: string[], params: string[]): Promise<Packaged> {
    const started = performance.now();
    const packaged = await packageStack({
      stage: 'local',
      prefix: 'kdr-bench-lambda-',
      // The bundles are built by the first package (infra/build.ts through the plugin); the others reuse
      // them, so that every run of the benchmark runs the same code.
      prebuilt: this.built,
      params: [
        `topics=${topics.join(',')}`,
        `pair=${uniqueName('bench-lambda-pkg')}`,
        // What test/helpers/lambdaLab.ts startLambdaLab passes: the lab's brokers take no authentication.
        'primaryAuthType=none',
        'vpcSubnets=subnet-lab',
        'vpcSecurityGroups=sg-lab',
        'mirrorFunctionName=kdr-local-mirror',
        ...params,
      ],
    });
    this.built = true;
    this.seconds.push((performance.now() - started) / 1000);
    return packaged;
  }
}

/**
 * Random (incompressible) values spread evenly over the partitions (Kafka's perf tool would put them
 * where its sticky partitioner goes: uneven, and one partition left alone at the end), in sends of 4,000.
 */
async function loadBacklog(
  config: KdrConfig,
  topic: string,
  partitions: number,
  records: number,
  size: number,
) {
  const producer = createKafka(config.primary, 'kdr-bench-lambda-load').producer();
  await producer.connect();
  try {
    for (let sent = 0; sent < records; ) {
      const n = Math.min(4000, records - sent);
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: n }, (_, i) => ({
          partition: (sent + i) % partitions,
          value: randomBytes(size),
        })),
      });
      sent += n;
    }
  } finally {
    await producer.disconnect();
  }
}

interface RunContext {
  lab: LambdaLab;
  source: KafkaEventSource;
  calls: Call[];
  logDir: string;
  callLog: string;
  pair: string;
  memoryMb: number;
  standbyCompression: string;
  /** CPU of the mirror's runtimes when the warm window began (records after it: warmRecords) and at the end. */
  cpu?: { start?: Cpu; end: Cpu; warmRecords: number };
}

type Cpu = ReturnType<typeof mirrorCpu>;

/** Starts the packaged stack in the lab with only `topic`'s mapping, each container's environment as Lambda's. */
async function startRun(
  config: KdrConfig,
  packaged: Packaged,
  topic: string,
  name: string,
): Promise<RunContext> {
  const runtime = await ensureLambdaRuntime(labPaths().cache);
  const stack = loadStack(packaged.templatePath);
  for (const [id, resource] of Object.entries(stack.resources)) {
    const topics = (resource.Properties as { Topics?: string[] } | undefined)?.Topics;
    if (resource.Type === 'AWS::Lambda::EventSourceMapping' && topics?.[0] !== topic)
      delete stack.resources[id];
  }
  const mirrorProps = stack.resources.MirrorLambdaFunction?.Properties as
    | { MemorySize?: number; Environment?: { Variables?: Record<string, string> } }
    | undefined;
  const memoryMb = Number(mirrorProps?.MemorySize);
  const standbyCompression = mirrorProps?.Environment?.Variables?.KDR_STANDBY_COMPRESSION ?? 'unknown';
  const logDir = path.join(labPaths().logs, 'bench-lambda', name);
  mkdirSync(logDir, { recursive: true });
  const callLog = path.join(logDir, 'aws-calls.jsonl');
  writeFileSync(callLog, '');
  // A pair, topic selection and mirror group of the run's own, as test/helpers/operations.ts ownDrillPair.
  const pair = uniqueName(`${name}-pair`);
  const lab = await LambdaLab.start({
    stack,
    packagedDir: packaged.dir,
    primary: createKafka(config.primary, 'kdr-bench-lambda'),
    runtime,
    logDir,
    region: config.aws.region,
    environment: {
      KDR_PRIMARY_BROKERS: config.primary.brokers.join(','),
      KDR_STANDBY_BROKERS: config.standby.brokers.join(','),
      AWS_ENDPOINT_URL: config.aws.endpoint!,
      AWS_REGION: config.aws.region,
      AWS_ACCESS_KEY_ID: config.aws.credentials!.accessKeyId,
      AWS_SECRET_ACCESS_KEY: config.aws.credentials!.secretAccessKey,
      KDR_AWS_CALL_LOG: callLog,
      KDR_PAIR: pair,
      KDR_TOPICS: topic,
      KDR_MIRROR_GROUP_ID: uniqueName(`${name}-mirror`),
      KDR_GROUPS: uniqueName(`${name}-g`),
    },
    schedules: false,
    eventSource: { log },
  });
  const source = lab.eventSources[0];
  if (!source || lab.eventSources.length !== 1 || source.definition.topic !== topic)
    throw new Error(`expected one event source on ${topic}, got ${lab.eventSources.length}`);
  // Every invocation of the mirror, timed where the event source makes it. Wrapped before any of them can
  // happen: the event source reaches Kafka first.
  const calls: Call[] = [];
  const invoke = lab.api.invoke.bind(lab.api);
  lab.api.invoke = async (nameOrArn, payload) => {
    const event = payload as { records?: Record<string, unknown[]> };
    const [partition, records] = Object.entries(event.records ?? {})[0] ?? ['', []];
    const start = Date.now();
    const result = await invoke(nameOrArn, payload);
    const answer = typeof result === 'object' && result.outcome === 'ok' ? result.payload : undefined;
    calls.push({
      partition,
      records: records.length,
      start,
      end: Date.now(),
      outcome: typeof result === 'string' ? result : result.outcome,
      mirrored: Number((answer as { recordsMirrored?: number } | undefined)?.recordsMirrored ?? 0),
    });
    return result;
  };
  return { lab, source, calls, logDir, callLog, pair, memoryMb, standbyCompression };
}

/**
 * CPU of the mirror's runtime processes (Node with the handler, under each container's RIE), read from
 * /proc while they are alive: user+system time of all their threads, and the main (JavaScript) thread's
 * time waiting on a run queue (/proc/<pid>/task/<pid>/schedstat), which is what the lab's 2 cores, shared
 * with the brokers, moto and the event source, add to each invocation. Init is included.
 */
function mirrorCpu(): { processes: number; cpuSeconds: number; mainThreadRunQueueSeconds: number } {
  // USER_HZ: the unit of utime and stime in /proc/<pid>/stat (100 on Linux, sysconf(_SC_CLK_TCK)).
  const hz = 100;
  let processes = 0;
  let cpuSeconds = 0;
  let mainThreadRunQueueSeconds = 0;
  for (const pid of descendants(process.pid)) {
    try {
      // Node running the runtime client with the mirror's handler (RIE's own arguments name them too).
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') !== 'node' || !argv.some((a) => a.includes('aws-lambda-ric')))
        continue;
      if (!argv.some((a) => a.startsWith('.build/mirror/'))) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields 14 and 15 (utime, stime), counted from the one after the command name's ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const schedstat = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(' ');
      cpuSeconds += (Number(fields[11]) + Number(fields[12])) / hz;
      mainThreadRunQueueSeconds += Number(schedstat[1]) / 1e9;
      processes++;
    } catch {
      // gone meanwhile
    }
  }
  return { processes, cpuSeconds, mainThreadRunQueueSeconds };
}

/** The mapping's group has committed every partition's end (test/e2e/lambdaLab.e2e.test.ts caughtUp). */
async function caughtUp(admin: Admin, source: KafkaEventSource): Promise<boolean> {
  const { topic } = source.definition;
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId: source.groupId, topics: [topic] }),
  ]);
  const at = new Map(committed[0]!.partitions.map((p) => [p.partition, Number(p.offset)]));
  return ends.every((e) => at.get(e.partition) === Number(e.high));
}

async function waitCaughtUp(
  config: KdrConfig,
  source: KafkaEventSource,
  timeoutMs: number,
  onPoll: () => void = () => {},
): Promise<number> {
  const admin = createKafka(config.primary, 'kdr-bench-lambda-admin').admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      onPoll();
      if (await caughtUp(admin, source)) return Date.now();
      if (source.state.State === 'Disabled')
        throw new Error(`the event source stopped: ${source.state.StateTransitionReason}`);
      if (Date.now() > deadline)
        throw new Error(`the event source did not catch up on ${source.definition.topic} in ${timeoutMs} ms`);
      await sleep(100);
    }
  } finally {
    await admin.disconnect();
  }
}

/**
 * CPU-seconds of the mirror's runtimes per million records, over the whole run (init included) and over the
 * warm window; and the share of the warm billed time that the main thread spent runnable, waiting for one
 * of the lab's 2 cores, busy with the brokers, moto, the event source and the other containers.
 */
function cpuFigures(
  cpu: NonNullable<RunContext['cpu']>,
  records: number,
  billedMs: number,
  warmBilledMs: number,
) {
  const { start, end, warmRecords } = cpu;
  return {
    processes: end.processes,
    cpuSeconds: end.cpuSeconds,
    cpuSecondsPerMillionRecords: (end.cpuSeconds / records) * 1e6,
    runQueueShareOfBilled: end.mainThreadRunQueueSeconds / (billedMs / 1000),
    warmCpuSecondsPerMillionRecords:
      start && warmRecords > 0 ? ((end.cpuSeconds - start.cpuSeconds) / warmRecords) * 1e6 : null,
    warmRunQueueShareOfBilled:
      start && warmBilledMs > 0
        ? (end.mainThreadRunQueueSeconds - start.mainThreadRunQueueSeconds) / (warmBilledMs / 1000)
        : null,
  };
}

/** What the run's containers and calls tell once the lab is closed: invocations, GB-s, AWS calls, init. */
async function costFigures(config: KdrConfig, ctx: RunContext, records: number, partitions: number) {
  const mirror = ctx.lab.api.functions().find((f) => f.name === 'mirror')!;
  const logs = containerLogs(ctx.logDir, 'mirror');
  const reports = logs.flatMap((l) => l.reports);
  const billedMs = reports.reduce((n, r) => n + r.billedMs, 0);
  const memoryMb = reports[0]?.memoryMb ?? ctx.memoryMb;
  const gbSeconds = (billedMs / 1000) * (memoryMb / 1024);
  // Warm: without each container's first invocation (its connections to Kafka and DynamoDB are made
  // then) and without the records of each partition's first batch (one container per partition here).
  const warmBilledMs = logs.reduce((n, l) => n + l.reports.slice(1).reduce((m, r) => m + r.billedMs, 0), 0);
  const firstBatch = new Map<string, number>();
  for (const c of [...ctx.calls].sort((a, b) => a.start - b.start))
    if (c.outcome === 'ok' && !firstBatch.has(c.partition)) firstBatch.set(c.partition, c.records);
  const warmRecords = records - [...firstBatch.values()].reduce((n, x) => n + x, 0);
  const warmGbSeconds = (warmBilledMs / 1000) * (memoryMb / 1024);
  const initMs = logs.flatMap((l) => l.initMs);
  const initGbSeconds = (initMs.reduce((n, x) => n + x, 0) / 1000) * (memoryMb / 1024);
  // From the caller's side, as a check of the REPORT lines: invocation time (cold ones include init).
  const callerGbSeconds = (ctx.calls.reduce((n, c) => n + (c.end - c.start), 0) / 1000) * (memoryMb / 1024);
  const all = readCallLog(ctx.callLog);
  const own = all.filter((c) => c.function === 'mirror');
  const dynamo = own.filter((c) => c.client === 'DynamoDBClient');
  const s3 = own.filter((c) => c.client === 'S3Client');
  const invocations = mirror.invocations;
  const units = requestUnits(own, config.offsetTable);
  const items = await offsetMapItems(config, ctx.pair, ctx.source.definition.topic, partitions);
  return {
    invocations,
    coldStarts: mirror.coldStarts,
    recordsPerInvocation: records / Math.max(1, invocations),
    invocationsPerMillionRecords: (invocations / records) * 1e6,
    memoryMb,
    standbyCompression: ctx.standbyCompression,
    reports: reports.length,
    billedMs,
    gbSeconds,
    gbSecondsPerMillionRecords: (gbSeconds / records) * 1e6,
    initGbSeconds,
    warmGbSecondsPerMillionRecords:
      mirror.coldStarts === partitions && warmRecords > 0 ? (warmGbSeconds / warmRecords) * 1e6 : null,
    cpu: ctx.cpu ? cpuFigures(ctx.cpu, records, billedMs, warmBilledMs) : null,
    firstInvocationMs: logs.flatMap((l) => (l.reports[0] ? [l.reports[0].durationMs] : [])),
    callerGbSecondsPerMillionRecords: (callerGbSeconds / records) * 1e6,
    medianDurationMs: median(reports.map((r) => r.durationMs)),
    initMs,
    reportInitMs: reports.flatMap((r) => (r.reportInitMs !== undefined ? [r.reportInitMs] : [])),
    aws: {
      calls: all.length,
      notAttributed: all.length - own.length,
      byClient: countBy(own, (c) => c.client),
      byCommand: countBy(own, (c) => {
        const tables = c.input.TableName ?? c.input.TransactItems?.map((i) => Object.values(i)[0]).join('+');
        return `${c.client.replace(/Client$/, '')}.${c.command.replace(/Command$/, '')}${tables ? ` ${tables}` : ''}`;
      }),
      dynamodbRequests: dynamo.length,
      dynamodbPerInvocation: dynamo.length / Math.max(1, invocations),
      s3Requests: s3.length,
      s3PerInvocation: s3.length / Math.max(1, invocations),
      readUnits: units.read,
      writeUnits: units.write,
      indexWriteUnits: units.indexWrites,
      readUnitsPerInvocation: units.read / Math.max(1, invocations),
      writeUnitsPerInvocation: units.write / Math.max(1, invocations),
      readUnitsPerMillionRecords: (units.read / records) * 1e6,
      writeUnitsPerMillionRecords: (units.write / records) * 1e6,
    },
    offsetMap: items,
  };
}

export type CostFigures = Awaited<ReturnType<typeof costFigures>>;

export interface ThroughputRun extends CostFigures {
  batchSize: number;
  records: number;
  mirrored: number;
  failures: number;
  /** From the first invocation (cold containers included) to every partition's end committed. */
  secondsFromFirstInvocation: number;
  recordsPerSecondFromFirstInvocation: number;
  /** From the moment every partition's first invocation had answered (all containers warm). */
  warmSeconds: number;
  warmRecords: number;
  recordsPerSecond: number;
  megabytesPerSecond: number;
}

async function throughputRun(
  config: KdrConfig,
  packaged: Packaged,
  topic: string,
  batchSize: number,
  options: BenchLambdaOptions,
  name: string,
): Promise<ThroughputRun> {
  const records = options.records[batchSize]!;
  // The backlog is there before the lab starts.
  await createBenchTopic(config, 'primary', topic, options.partitions);
  await loadBacklog(config, topic, options.partitions, records, options.size);
  const ctx = await startRun(config, packaged, topic, name);
  let finished: number;
  let warmCpu: { at: number; cpu: Cpu } | undefined;
  try {
    finished = await waitCaughtUp(config, ctx.source, 600_000, () => {
      // The warm window begins once every partition's first batch has been answered.
      const answered = new Set(ctx.calls.filter((c) => c.outcome === 'ok').map((c) => c.partition));
      if (!warmCpu && answered.size === options.partitions) warmCpu = { at: Date.now(), cpu: mirrorCpu() };
    });
    const end = mirrorCpu();
    const answeredBefore = warmCpu
      ? ctx.calls.filter((c) => c.outcome === 'ok' && c.end <= warmCpu!.at).reduce((n, c) => n + c.records, 0)
      : records;
    ctx.cpu = { ...(warmCpu ? { start: warmCpu.cpu } : {}), end, warmRecords: records - answeredBefore };
  } finally {
    await ctx.lab.close();
  }
  const ok = ctx.calls.filter((c) => c.outcome === 'ok');
  const first = Math.min(...ctx.calls.map((c) => c.start));
  const firstAnswered = new Map<string, number>();
  for (const c of ok)
    firstAnswered.set(c.partition, Math.min(c.end, firstAnswered.get(c.partition) ?? Infinity));
  const warmFrom = Math.max(...firstAnswered.values());
  const before = ok.filter((c) => c.end <= warmFrom).reduce((n, c) => n + c.records, 0);
  const warmSeconds = (finished - warmFrom) / 1000;
  const warmRecords = records - before;
  const figures = await costFigures(config, ctx, records, options.partitions);
  return {
    batchSize,
    records,
    mirrored: ok.reduce((n, c) => n + c.mirrored, 0),
    failures: ctx.source.stats.failures,
    secondsFromFirstInvocation: (finished - first) / 1000,
    recordsPerSecondFromFirstInvocation: records / ((finished - first) / 1000),
    warmSeconds,
    warmRecords,
    recordsPerSecond: warmRecords / warmSeconds,
    megabytesPerSecond: (warmRecords * options.size) / 1e6 / warmSeconds,
    ...figures,
  };
}

export interface LatencyRun extends CostFigures {
  batchSize: number;
  windowSeconds: number;
  rate: number;
  seconds: number;
  produced: number;
  received: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

/**
 * A steady rate of records with CreateTime timestamps into a warm stack; each record's latency is the
 * time from its timestamp to its receipt by a read_committed consumer of the standby topic.
 */
async function latencyRun(
  config: KdrConfig,
  packaged: Packaged,
  topic: string,
  windowSeconds: number,
  options: BenchLambdaOptions,
  name: string,
): Promise<LatencyRun> {
  const { rate, seconds, batchSize } = options.latency;
  const partitions = options.partitions;
  await createBenchTopic(config, 'primary', topic, partitions);
  const producer = createKafka(config.primary, 'kdr-bench-lambda-latency').producer();
  await producer.connect();
  const value = () => randomBytes(options.size);
  const warmup = 10 * partitions;
  // Warm-up records, so that the mirror creates the standby topic and its containers start before the
  // measured records.
  await producer.send({
    topic,
    messages: Array.from({ length: warmup }, (_, i) => ({
      partition: i % partitions,
      key: `warm-${i}`,
      value: value(),
    })),
  });
  const ctx = await startRun(config, packaged, topic, name);
  const consumer = createKafka(config.standby, 'kdr-bench-lambda-latency').consumer({
    groupId: uniqueName(`${name}-reader`),
    readUncommitted: false,
  });
  const latencies: number[] = [];
  let warmSeen = 0;
  let closed = false;
  try {
    await waitCaughtUp(config, ctx.source, 120_000);
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      partitionsConsumedConcurrently: partitions,
      eachMessage: async ({ message }) => {
        const now = Date.now();
        const key = message.key?.toString() ?? '';
        if (key.startsWith('warm-')) warmSeen++;
        else if (key.startsWith('lat-')) latencies.push(now - Number(message.timestamp));
      },
    });
    for (let i = 0; warmSeen < warmup; i++) {
      if (i > 1200) throw new Error(`the standby consumer saw ${warmSeen} of ${warmup} warm-up records`);
      await sleep(50);
    }
    const startCpu = mirrorCpu();
    const produced = rate * seconds;
    const perTick = rate / 10;
    const started = Date.now();
    let sent = 0;
    for (let tick = 0; sent < produced; tick++) {
      const due = started + tick * 100;
      if (due > Date.now()) await sleep(due - Date.now());
      const n = Math.min(perTick, produced - sent);
      const at = String(Date.now());
      await producer.send({
        topic,
        messages: Array.from({ length: n }, (_, i) => ({
          partition: (sent + i) % partitions,
          key: `lat-${sent + i}`,
          value: value(),
          timestamp: at,
        })),
      });
      sent += n;
    }
    const deadline = Date.now() + 60_000;
    while (latencies.length < produced && Date.now() < deadline) await sleep(100);
    await consumer.stop();
    ctx.cpu = { start: startCpu, end: mirrorCpu(), warmRecords: produced };
    const mirroredCalls = ctx.calls.filter((c) => c.outcome === 'ok');
    log(
      `latency window ${windowSeconds}s: ${latencies.length}/${produced} received, ${mirroredCalls.length} invocations`,
    );
    await ctx.lab.close();
    closed = true;
    const figures = await costFigures(config, ctx, produced + warmup, partitions);
    return {
      batchSize,
      windowSeconds,
      rate,
      seconds,
      produced,
      received: latencies.length,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      maxMs: Math.max(...latencies),
      meanMs: latencies.reduce((n, x) => n + x, 0) / Math.max(1, latencies.length),
      ...figures,
    };
  } finally {
    await Promise.allSettled([
      consumer.disconnect(),
      producer.disconnect(),
      ...(closed ? [] : [ctx.lab.close()]),
    ]);
  }
}

export async function benchLambda(config: KdrConfig, options: BenchLambdaOptions = DEFAULT_OPTIONS) {
  const started = performance.now();
  await ensureLambdaRuntime(labPaths().cache);
  const packages = new Packages();
  const stamp = Date.now().toString(36);
  const throughput: { batchSize: number; runs: ThroughputRun[] }[] = [];
  const latency: LatencyRun[] = [];
  for (const batchSize of options.batchSizes) {
    const topics = Array.from({ length: options.runs }, (_, i) => `bench-lambda-b${batchSize}-${stamp}-${i}`);
    const latencyTopic = `bench-lambda-lat-b${batchSize}-w1-${stamp}`;
    const measuresLatency = batchSize === options.latency.batchSize && options.latency.windows.includes(1);
    const packaged = await packages.make(measuresLatency ? [...topics, latencyTopic] : topics, [
      `mirrorBatchSize=${batchSize}`,
    ]);
    const runs: ThroughputRun[] = [];
    for (const [i, topic] of topics.entries()) {
      const run = await throughputRun(
        config,
        packaged,
        topic,
        batchSize,
        options,
        `b${batchSize}-r${i}-${stamp}`,
      );
      log(
        `BatchSize ${batchSize} run ${i + 1}/${options.runs}: ${Math.round(run.recordsPerSecond)} records/s warm (${Math.round(run.recordsPerSecondFromFirstInvocation)} from the first invocation), ${run.invocations} invocations, ${run.aws.dynamodbPerInvocation.toFixed(2)} DynamoDB requests per invocation, ${run.gbSecondsPerMillionRecords.toFixed(1)} GB-s per million records`,
      );
      runs.push(run);
    }
    throughput.push({ batchSize, runs });
    if (measuresLatency)
      latency.push(
        await latencyRun(config, packaged, latencyTopic, 1, options, `lat-b${batchSize}-w1-${stamp}`),
      );
  }
  for (const window of options.latency.windows.filter((w) => w !== 1)) {
    const topic = `bench-lambda-lat-b${options.latency.batchSize}-w${window}-${stamp}`;
    const packaged = await packages.make(
      [topic],
      [`mirrorBatchSize=${options.latency.batchSize}`, `mirrorBatchWindowSeconds=${window}`],
    );
    latency.push(await latencyRun(config, packaged, topic, window, options, `lat-w${window}-${stamp}`));
  }
  const med = (runs: ThroughputRun[], pick: (r: ThroughputRun) => number) => median(runs.map(pick));
  const summary = throughput.map(({ batchSize, runs }) => ({
    batchSize,
    runs: runs.length,
    records: runs[0]!.records,
    recordsPerSecond: med(runs, (r) => r.recordsPerSecond),
    recordsPerSecondFromFirstInvocation: med(runs, (r) => r.recordsPerSecondFromFirstInvocation),
    megabytesPerSecond: med(runs, (r) => r.megabytesPerSecond),
    recordsPerInvocation: med(runs, (r) => r.recordsPerInvocation),
    invocationsPerMillionRecords: med(runs, (r) => r.invocationsPerMillionRecords),
    medianDurationMs: med(runs, (r) => r.medianDurationMs),
    gbSecondsPerMillionRecords: med(runs, (r) => r.gbSecondsPerMillionRecords),
    warmGbSecondsPerMillionRecords: median(
      runs.flatMap((r) =>
        r.warmGbSecondsPerMillionRecords === null ? [] : [r.warmGbSecondsPerMillionRecords],
      ),
    ),
    callerGbSecondsPerMillionRecords: med(runs, (r) => r.callerGbSecondsPerMillionRecords),
    cpuSecondsPerMillionRecords: median(
      runs.flatMap((r) => (r.cpu ? [r.cpu.cpuSecondsPerMillionRecords] : [])),
    ),
    warmCpuSecondsPerMillionRecords: median(
      runs.flatMap((r) =>
        r.cpu?.warmCpuSecondsPerMillionRecords != null ? [r.cpu.warmCpuSecondsPerMillionRecords] : [],
      ),
    ),
    warmRunQueueShareOfBilled: median(
      runs.flatMap((r) =>
        r.cpu?.warmRunQueueShareOfBilled != null ? [r.cpu.warmRunQueueShareOfBilled] : [],
      ),
    ),
    dynamodbPerInvocation: med(runs, (r) => r.aws.dynamodbPerInvocation),
    s3PerInvocation: med(runs, (r) => r.aws.s3PerInvocation),
    readUnitsPerMillionRecords: med(runs, (r) => r.aws.readUnitsPerMillionRecords),
    writeUnitsPerMillionRecords: med(runs, (r) => r.aws.writeUnitsPerMillionRecords),
    maxItemBytes: Math.max(...runs.map((r) => r.offsetMap.maxItemBytes)),
  }));
  const allInit = [...throughput.flatMap((t) => t.runs), ...latency].flatMap((r) => r.initMs);
  const reportInit = [...throughput.flatMap((t) => t.runs), ...latency].flatMap((r) => r.reportInitMs);
  return {
    benchmark: 'lambda',
    date: new Date().toISOString(),
    machine: machine(),
    lambdaRuntime: { rie: RIE_VERSION, node: NODE_PACKAGE, ric: RIC_PACKAGE },
    setup: {
      ...options,
      brokersPerCluster: 1,
      // No ReservedConcurrentExecutions in the lab's package: the lab's Lambda API runs at most 4 containers.
      concurrency: 4,
      // The packaged template's MemorySize and KDR_STANDBY_COMPRESSION of the mirror function.
      memoryMb: throughput[0]?.runs[0]?.memoryMb ?? null,
      // The packaged template's (KDR_STANDBY_COMPRESSION of the mirror function).
      standbyCompression: throughput[0]?.runs[0]?.standbyCompression ?? 'unknown',
      packageSeconds: packages.seconds,
      totalSeconds: (performance.now() - started) / 1000,
    },
    summary,
    coldStart: {
      containers: allInit.length,
      medianInitMs: median(allInit),
      minInitMs: Math.min(...allInit),
      maxInitMs: Math.max(...allInit),
      medianReportInitDurationMs: median(reportInit),
      medianFirstInvocationMs: median(
        [...throughput.flatMap((t) => t.runs), ...latency].flatMap((r) => r.firstInvocationMs),
      ),
    },
    latency,
    throughput,
  };
}
