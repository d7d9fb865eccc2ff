import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Lab } from '../infra/local/lab.ts';
import { REPO_ROOT } from '../infra/local/paths.ts';
import { loadConfig } from '../src/config.ts';
import { barChartSvg } from './chart.ts';
import { benchCompare, TOOL_NAMES, TOOLS, type Tool } from './compare.ts';
import { benchFailover } from './failover.ts';
import { machine, updateDoc, writeResults } from './harness.ts';
import { benchHotpath } from './hotpath.ts';
import { benchLambda } from './lambda.ts';
import { benchMirror } from './mirror.ts';
import { benchRestore } from './restore.ts';
import { benchScale, SCALE_SIZES } from './scale.ts';
import { benchSnapshot } from './snapshot.ts';

/**
 * `npm run bench [-- names...]`: brings the lab up (and down again if it started it), runs the
 * benchmarks, writes bench/results/<date>-<name>.json and the tables in docs/BENCHMARKS.md.
 */

const wanted = process.argv.slice(2);
const selected = (name: string) => wanted.length === 0 || wanted.includes(name);

const lab = new Lab({ log: (line) => process.stderr.write(`[lab] ${line}\n`) });
const wasUp = (await lab.probe()).up;
if (!wasUp) await lab.up(1);
const all: Record<string, unknown> = {};
try {
  const config = loadConfig();
  // The RTO first: moto slows down as its tables fill (seen here: 1.4 s on a fresh lab, 12 s after a
  // day of tests on the same one), and the other benchmarks fill them.
  if (selected('failover')) {
    const result = await benchFailover(config);
    all.failover = result;
    const file = writeResults('failover', result);
    updateDoc(
      'failover',
      `## Planned failover RTO (${result.date.slice(0, 10)})

${result.setup.partitions} partitions (5 topics x 10), ${result.setup.groups} consumer groups with committed offsets on every
partition, mirror caught up, one broker per cluster: \`kdr failover --planned\` in a fresh process of its own
(its first connections to both clusters and to DynamoDB are part of the figure), time from the start of
the failover to its report
(control transitions, drain check, final checkpoint, 1,000 group-partition offsets translated and
committed on the standby, fencing of all 50 partitions). Median of ${result.runs.length} runs.

| metric | median | runs |
| --- | --- | --- |
| RTO (ms) | ${Math.round(result.median.rtoMs)} | ${result.runs.map((r) => r.rtoMs).join(', ')} |
| peak RSS of \`kdr failover\` (MiB) | ${Math.round(result.median.peakRssMiB)} | ${result.runs.map((r) => Math.round(r.peakRssMiB)).join(', ')} |

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- failover\`.`,
    );
    process.stderr.write(`failover: ${JSON.stringify(result.median)}\n`);
  }
  if (selected('scale')) {
    // SCALE_PARTITIONS=100,1000 and SCALE_RUNS=1 for a shorter look; the doc says what ran.
    const only = process.env.SCALE_PARTITIONS?.split(',').map(Number);
    const result = await benchScale(config, {
      runs: Number(process.env.SCALE_RUNS) || 3,
      ...(only ? { sizes: SCALE_SIZES.filter((s) => only.includes(s.topics * s.partitionsPerTopic)) } : {}),
    });
    all.scale = result;
    const file = writeResults('scale', result);
    const label = (s: (typeof result.sizes)[number]) => `${s.partitions} partitions, ${s.groups} groups`;
    const chart = barChartSvg({
      title: `Failover, checkpoint and mirror start-up by size (${result.date.slice(0, 10)}, median of ${result.sizes[0]!.runs.length})`,
      groups: result.sizes.map(label),
      series: [
        {
          name: 'planned failover RTO',
          color: '#2b6cb0',
          values: result.sizes.map((s) => s.median.rtoMs / 1000),
        },
        {
          name: 'kdr checkpoint',
          color: '#dd6b20',
          values: result.sizes.map((s) => s.median.checkpointMs / 1000),
        },
        {
          name: 'kdr mirror --until-caught-up',
          color: '#a0aec0',
          values: result.sizes.map((s) => s.median.mirrorMs / 1000),
        },
      ],
      unit: 's',
    });
    writeFileSync(path.join(REPO_ROOT, 'docs', 'bench-scale.svg'), chart);
    const rows = result.sizes
      .map(
        (s) =>
          `| ${s.partitions} | ${s.groups} | ${s.groupPartitions.toLocaleString('en')} | ${(s.median.rtoMs / 1000).toFixed(1)} | ${(s.median.checkpointMs / 1000).toFixed(1)} | ${(s.median.mirrorMs / 1000).toFixed(1)} | ${Math.round(s.median.mirrorPeakRssMiB)} | ${Math.round(s.median.failoverPeakRssMiB)} |`,
      )
      .join('\n');
    const phases = result.sizes
      .map((s) => `- ${label(s)}: ${s.runs.map((r) => JSON.stringify(r.timings)).join('; ')}`)
      .join('\n');
    const growth = scaleGrowth(result.sizes);
    updateDoc(
      'scale',
      `## Scale: failover, checkpoint and mirror start-up by size (${result.date.slice(0, 10)})

Topics of ${result.sizes.map((s) => s.partitionsPerTopic).join('/')} partitions with ${result.setup.recordsPerPartition} records each; each group commits on
every partition of one topic. Each command in a process of its own, as a user runs it (its start-up and first
connections included): \`kdr mirror --until-caught-up\`, then \`kdr checkpoint\`, then \`kdr failover --planned\`
(RTO from its report). One broker per cluster, DynamoDB on moto. ${result.sizes[0]!.runs.length === 1 ? 'One run per size (not a median: `SCALE_RUNS=1`).' : `Median of ${result.sizes[0]!.runs.length} runs per size.`}

| partitions | groups | group-partitions | failover RTO (s) | checkpoint (s) | mirror until caught up (s) | mirror peak RSS (MiB) | failover peak RSS (MiB) |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows}

![scale](bench-scale.svg)

${growth}

Failover phases (ms), each run:
${phases}

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- scale\`.`,
    );
    process.stderr.write(`scale: ${JSON.stringify(result.sizes.map((s) => s.median))}\n`);
  }
  if (selected('compare')) {
    const result = await benchCompare(config);
    all.compare = result;
    const file = writeResults('compare', result);
    const colors: Record<Tool, string> = {
      kdr: '#2b6cb0',
      'kdr-2w': '#63b3ed',
      mm2: '#dd6b20',
      'mm2-eos': '#f6ad55',
    };
    const chart = barChartSvg({
      title: `Mirror throughput, primary -> standby (${result.date.slice(0, 10)}, median of ${result.setup.runs})`,
      groups: result.summary.map((s) => `${s.size} B records`),
      series: [
        ...TOOLS.map((t) => ({
          name: TOOL_NAMES[t],
          color: colors[t],
          values: result.summary.map((s) => s.tools[t].recordsPerSecond),
        })),
        {
          name: 'perf-tool limit',
          color: '#a0aec0',
          values: result.summary.map((s) => s.limitRecordsPerSecond),
        },
      ],
      unit: 'records/s',
    });
    writeFileSync(path.join(REPO_ROOT, 'docs', 'bench-compare.svg'), chart);
    const m = result.machine;
    const n = (x: number) => Math.round(x).toLocaleString('en');
    const rows = result.summary
      .map(
        (r) =>
          `| ${r.size} B | ${TOOLS.map((t) => `${n(r.tools[t].recordsPerSecond)} (${r.tools[t].megabytesPerSecond.toFixed(1)} MB/s)`).join(' | ')} | ${n(r.limitRecordsPerSecond)} | ${r.kdrOverMm2.toFixed(2)} / ${r.kdrOverMm2Eos.toFixed(2)} | ${r.kdr2wOverMm2.toFixed(2)} / ${r.kdr2wOverMm2Eos.toFixed(2)} | ${r.kdrOverLimit.toFixed(2)} | ${r.dynamodbPer1000.toFixed(2)} | ${TOOLS.map((t) => n(r.tools[t].peakRssMiB)).join(' / ')} |`,
      )
      .join('\n');
    const latencyRows = result.latency.summary
      .map(
        (l) =>
          `| ${n(l.rate)} | ${TOOL_NAMES[l.tool]} | ${l.p50Ms} | ${l.p99Ms} | ${l.maxMs} | ${n(l.received)} / ${n(l.sent)} |`,
      )
      .join('\n');
    updateDoc(
      'compare',
      `## kdr next to MirrorMaker 2 and the Kafka perf tools (${result.date.slice(0, 10)})

Same lab, same run, same data: each tool mirrors its own copy of a 4-partition topic loaded by
\`kafka-producer-perf-test\`, from the first record on the standby to the last (start-up not counted).
MirrorMaker 2: \`connect-mirror\` ${m.kafka}, dedicated mode, identity replication policy, 4 tasks, at-least-once
(its default) and exactly once (\`standby.exactly.once.source.support = enabled\`; timed to the standby's
last offset move, then its committed records counted with kcat). kdr: \`kdr mirror --until-caught-up\`, one
process and \`--workers 2\`, exactly once (transactions on the standby, offset map in DynamoDB on moto).
Limit: the slower of \`kafka-consumer-perf-test\` on the primary and \`kafka-producer-perf-test\` on the
standby. Medians of ${result.setup.runs} runs; ratios are medians of each run's own ratio. Peak RSS counts every process of a tool.
Machine: ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.java}, Kafka ${m.kafka}, kafkajs ${m.kafkajs}, one broker per cluster.

![throughput chart](bench-compare.svg)

| record size | ${TOOLS.map((t) => `${TOOL_NAMES[t]} records/s`).join(' | ')} | limit records/s | kdr / MM2 (at-least-once / exactly once) | kdr --workers 2 / MM2 (same) | kdr / limit | DynamoDB requests per 1000 records (kdr) | peak RSS ${TOOLS.join(' / ')} (MiB) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows}

**Replication latency** at steady rates for ${result.latency.seconds} s each: a kafkajs producer on the primary (one
request every 50 ms), a \`read_committed\` kafkajs consumer on the standby; latency = receipt minus the
record's timestamp. Medians over ${result.setup.runs} runs of each run's percentile.

| records/s | tool | p50 (ms) | p99 (ms) | max (ms) | received / sent |
| --- | --- | --- | --- | --- | --- |
${latencyRows}

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- compare\`.`,
    );
    process.stderr.write(
      `compare: ${JSON.stringify(result.summary)} latency ${JSON.stringify(result.latency.summary)}\n`,
    );
  }
  if (selected('hotpath')) {
    const result = {
      benchmark: 'hotpath',
      date: new Date().toISOString(),
      machine: machine(),
      ...benchHotpath(),
    };
    all.hotpath = result;
    const file = writeResults('hotpath', result);
    updateDoc(
      'hotpath',
      `## Mirror hot path: kdr's kafkajs patch, before and after (${result.date.slice(0, 10)})

A CPU profile of \`kdr mirror\` on 400,000 records of 100 B (\`node --cpu-prof\`, summed with
\`bench/profile.ts\`) showed kafkajs grouping a produce call's messages by partition in O(n²) (13% of
CPU) and allocating a 512-byte zeroed buffer per record and per header (most of the 22% spent in GC).
\`patches/kafkajs+2.2.4.patch\` groups in one pass and encodes each record into one buffer of its exact
size (same bytes). Side by side in one run, ${result.records.toLocaleString('en')} records with kdr's two provenance headers, medians of 7:

| step | before (ms) | after (ms) | speed-up |
| --- | --- | --- | --- |
| group messages by partition | ${result.groupBeforeMs.toFixed(1)} | ${result.groupAfterMs.toFixed(1)} | ${result.groupSpeedup.toFixed(1)}x |
| encode records | ${result.encodeBeforeMs.toFixed(1)} | ${result.encodeAfterMs.toFixed(1)} | ${result.encodeSpeedup.toFixed(2)}x |

End to end on the same 400,000 records (one run each, same lab): \`kdr mirror --until-caught-up\` took
14.1 s before and 8.8 s after, start-up included; CPU time sampled 14.0 s before, 8.7 s after.

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- hotpath\`.`,
    );
  }
  if (selected('mirror')) {
    const result = await benchMirror(config);
    all.mirror = result;
    const file = writeResults('mirror', result);
    const m = result.median;
    updateDoc(
      'mirror',
      `## Mirror throughput (${result.date.slice(0, 10)})

${result.setup.records.toLocaleString('en')} records of ${result.setup.size} B over ${result.setup.partitions} partitions, \`kdr mirror\`'s
consumer group path (transactions on the standby, offset map in DynamoDB on moto), one broker per
cluster, median of ${result.runs.length} runs. Machine: ${result.machine.cpus} cores (${result.machine.cpuModel}), ${result.machine.memoryGiB} GiB,
Node ${result.machine.node}, Kafka ${result.machine.kafka}, kafkajs ${result.machine.kafkajs}.

| metric | median |
| --- | --- |
| records/s | ${Math.round(m.recordsPerSecond).toLocaleString('en')} |
| MB/s (values) | ${m.megabytesPerSecond.toFixed(1)} |
| records per batch | ${Math.round(m.recordsPerBatch)} |
| offset-map writes per batch | ${m.offsetMapWritesPerBatch.toFixed(2)} |
| peak RSS (MiB) | ${Math.round(m.peakRssMiB)} |

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- mirror\`.`,
    );
    process.stderr.write(`mirror: ${JSON.stringify(m)}\n`);
  }
  if (selected('snapshot')) {
    const result = await benchSnapshot(config);
    all.snapshot = result;
    const file = writeResults('snapshot', result);
    const rows = Object.entries(result.median)
      .map(
        ([c, m]) =>
          `| ${c} | ${m.snapshotMBps.toFixed(1)} | ${m.putObjectMBps.toFixed(1)} | ${m.ratio.toFixed(2)} | ${m.sizeRatio.toFixed(3)} | ${Math.round(m.peakRssMiB)} | ${Math.round(m.rssGrowthMiB)} |`,
      )
      .join('\n');
    updateDoc(
      'snapshot',
      `## Snapshot throughput (${result.date.slice(0, 10)})

${result.setup.records.toLocaleString('en')} records of ${result.setup.size} B over ${result.setup.partitions} partitions (\`kafka-producer-perf-test\`'s random
payloads), one snapshot from scratch per segment compression of the same topic in each run (read with
read_committed, encode, compress, SHA-256, upload ${result.setup.segmentBytes / 2 ** 20} MiB segments to moto), each next to raw
PutObject of the same bytes in objects of the segment size against the same endpoint, right after it.
Median of ${result.runs.length} runs.

| compression | snapshot MB/s | raw PutObject MB/s | snapshot / PutObject | stored / record bytes | peak RSS of the process (MiB) | RSS growth during the snapshot (MiB) |
| --- | --- | --- | --- | --- | --- | --- |
${rows}

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- snapshot\`.`,
    );
    process.stderr.write(`snapshot: ${JSON.stringify(result.median)}\n`);
  }
  if (selected('restore')) {
    const result = await benchRestore(config);
    all.restore = result;
    const file = writeResults('restore', result);
    const m = result.median;
    updateDoc(
      'restore',
      `## Restore throughput (${result.date.slice(0, 10)})

${result.setup.records.toLocaleString('en')} records of ${result.setup.size} B over ${result.setup.partitions} partitions, restored from a snapshot into a new
standby topic (segments checked, downloaded and decoded ${result.setup.prefetchSegments} ahead, transactions of ${result.setup.transactionRecords.toLocaleString('en')} records,
progress saved to DynamoDB after each), next to \`kafka-producer-perf-test\` writing as many records of the
same size to the same standby right after. Median of ${result.runs.length} runs.

| metric | median |
| --- | --- |
| restore records/s | ${Math.round(m.restoreRecordsPerSecond).toLocaleString('en')} |
| restore MB/s | ${m.restoreMBps.toFixed(1)} |
| producer perf tool records/s | ${Math.round(m.producerRecordsPerSecond).toLocaleString('en')} |
| restore / producer tool | ${m.ratio.toFixed(2)} |
| peak RSS of the process (MiB) | ${Math.round(m.peakRssMiB)} |

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- restore\`.`,
    );
    process.stderr.write(`restore: ${JSON.stringify(m)}\n`);
  }
  if (selected('lambda')) {
    const result = await benchLambda(config);
    all.lambda = result;
    const file = writeResults('lambda', result);
    const m = result.machine;
    const ms = (x: number) => Math.round(x).toLocaleString('en');
    const pct = (x: number | null | undefined) => (x == null ? 'n/a' : `${Math.round(x * 100)}%`);
    const rows = result.summary
      .map(
        (r) =>
          `| ${r.batchSize.toLocaleString('en')} | ${r.records.toLocaleString('en')} | ${ms(r.recordsPerSecond)} | ${ms(r.recordsPerSecondFromFirstInvocation)} | ${ms(r.recordsPerInvocation)} | ${ms(r.medianDurationMs)} | ${r.gbSecondsPerMillionRecords.toFixed(0)} / ${r.warmGbSecondsPerMillionRecords.toFixed(0)} | ${ms(r.warmCpuSecondsPerMillionRecords)} | ${pct(r.warmRunQueueShareOfBilled)} | ${r.dynamodbPerInvocation.toFixed(2)} | ${ms(r.readUnitsPerMillionRecords)} / ${ms(r.writeUnitsPerMillionRecords)} | ${r.s3PerInvocation} |`,
      )
      .join('\n');
    const latencyRows = result.latency
      .map(
        (l) =>
          `| ${l.batchSize.toLocaleString('en')} | ${l.windowSeconds} s | ${l.received.toLocaleString('en')} / ${l.produced.toLocaleString('en')} | ${l.p50Ms} | ${l.p99Ms} | ${l.maxMs} | ${ms(l.recordsPerInvocation)} | ${l.gbSecondsPerMillionRecords.toFixed(0)} / ${(l.warmGbSecondsPerMillionRecords ?? Number.NaN).toFixed(0)} | ${ms(l.cpu?.warmCpuSecondsPerMillionRecords ?? Number.NaN)} | ${pct(l.cpu?.warmRunQueueShareOfBilled)} | ${l.aws.dynamodbPerInvocation.toFixed(2)} |`,
      )
      .join('\n');
    const c = result.coldStart;
    updateDoc(
      'lambda',
      `## The packaged mirror function, as Lambda runs it (${result.date.slice(0, 10)})

\`sls package --stage local\` with the lab's params and \`mirrorBatchSize\` = 100, 1,000 or 10,000; the mirror
function's zip run by AWS's Runtime Interface Emulator (${result.lambdaRuntime.rie}, ${result.lambdaRuntime.node},
${result.lambdaRuntime.ric}) behind the lab's Lambda API, fed by the lab's Kafka event source from the template's
mapping (one batch in flight per partition, commit after each success); at most ${result.setup.concurrency} containers (the template
reserves no concurrency), ${result.setup.memoryMb} MB each as the template says but not enforced by the emulator; standby
compression ${result.setup.standbyCompression} (the template's). Own topic of ${result.setup.partitions} partitions, pair and groups per run. Machine: ${m.cpus} cores
(${m.cpuModel}), ${m.memoryGiB} GiB, x86-64 (the template deploys arm64), Kafka ${m.kafka}, one broker per cluster, DynamoDB on moto.

**Throughput on a backlog** of random ${result.setup.size} B values spread evenly over the partitions, written before the lab
starts. *Warm*: from the moment every partition's first batch had been answered (containers started, their
connections made) to every partition's end committed by the event source's group; *from first invocation*
includes the ${result.setup.concurrency} cold starts. GB-s from RIE's REPORT lines (billed ms x memory size); *warm* GB-s leave out each
container's first invocation and each partition's first batch. CPU: user+system time of the runtime processes
(/proc), over the warm window; *waiting for a core*: the JavaScript thread's run-queue time (/proc schedstat)
as a share of the billed time: time lost to the other processes on the lab's cores. DynamoDB calls from the functions' own call log
(\`KDR_AWS_CALL_LOG\`); request units computed from them (see bench/lambda.ts \`requestUnits\`). Medians of ${result.setup.runs} runs.

| BatchSize | backlog records | records/s warm | records/s from first invocation | records per invocation | median invocation (ms) | GB-s per million records (all / warm) | CPU-s per million records (warm) | main thread waiting for a core (share of warm billed time) | DynamoDB requests per invocation | DynamoDB read / write units per million records | S3 requests per invocation |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows}

**Replication latency** at a steady ${result.setup.latency.rate.toLocaleString('en')} records/s for ${result.setup.latency.seconds} s into a warm stack (CreateTime timestamps; latency =
receipt by a \`read_committed\` kafkajs consumer of the standby topic minus the record's timestamp), one run each.
The template's batching window (\`mirrorBatchWindowSeconds\`, 1 s by default) holds each batch that long first.

| BatchSize | batching window | received | p50 (ms) | p99 (ms) | max (ms) | records per invocation | GB-s per million records (all / warm) | CPU-s per million records (steady) | main thread waiting for a core | DynamoDB requests per invocation |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${latencyRows}

**Cold start**: init of a mirror container (RIE's \`INIT REPORT(durationMs)\`; the REPORT line's own "Init
Duration" reads ${c.medianReportInitDurationMs} ms under this emulator), median ${ms(c.medianInitMs)} ms over ${c.containers} containers (${ms(c.minInitMs)} to ${ms(c.maxInitMs)}),
up to ${result.setup.concurrency} starting at once on ${m.cpus} cores; each container's first invocation (connections to both clusters
and DynamoDB) took a median ${ms(c.medianFirstInvocationMs)} ms more.

Cost per TB from these figures: [COST.md](COST.md). Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- lambda\`.`,
    );
    process.stderr.write(`lambda: ${JSON.stringify(result.summary)} ${JSON.stringify(result.coldStart)}\n`);
  }
} finally {
  if (Object.keys(all).length > 0) writeResults('all', all);
  if (!wasUp) await lab.down();
}

/**
 * How each figure grows between the smallest and the largest size measured (per 1,000 partitions, the
 * mirror's memory per partition), and a straight-line extrapolation to 10x the largest size.
 */
function scaleGrowth(
  sizes: {
    partitions: number;
    median: Record<'rtoMs' | 'checkpointMs' | 'mirrorMs' | 'mirrorPeakRssMiB', number>;
  }[],
): string {
  if (sizes.length < 2) return 'Only one size ran: no growth to state.';
  const [a, b] = [sizes[0]!, sizes.at(-1)!];
  const span = b.partitions - a.partitions;
  const slope = (f: 'rtoMs' | 'checkpointMs' | 'mirrorMs' | 'mirrorPeakRssMiB') =>
    (b.median[f] - a.median[f]) / span;
  const at10x = (f: 'rtoMs' | 'checkpointMs' | 'mirrorMs' | 'mirrorPeakRssMiB') =>
    b.median[f] + slope(f) * (9 * b.partitions);
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  return [
    `Growth from ${a.partitions} to ${b.partitions} partitions (straight line through the two figures; the 10x column extrapolates it to ${10 * b.partitions} partitions, which the lab cannot run):`,
    '',
    '| figure | per 1,000 partitions | at 10x |',
    '| --- | --- | --- |',
    `| mirror until caught up | ${s(slope('mirrorMs') * 1000)} | ${s(at10x('mirrorMs'))} |`,
    `| mirror peak RSS | ${Math.round(slope('mirrorPeakRssMiB') * 1000)} MiB (${Math.round(slope('mirrorPeakRssMiB') * 1024)} KiB per partition) | ${Math.round(at10x('mirrorPeakRssMiB'))} MiB |`,
    `| kdr checkpoint | ${s(slope('checkpointMs') * 1000)} | ${s(at10x('checkpointMs'))} |`,
    `| planned failover RTO | ${s(slope('rtoMs') * 1000)} | ${s(at10x('rtoMs'))} |`,
  ].join('\n');
}
