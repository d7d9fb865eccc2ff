import { Lab } from '../infra/local/lab.ts';
import { loadConfig } from '../src/config.ts';
import { benchFailover } from './failover.ts';
import { updateDoc, writeResults } from './harness.ts';
import { benchMirror } from './mirror.ts';
import { benchRestore } from './restore.ts';
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
try {
  const config = loadConfig();
  if (selected('mirror')) {
    const result = await benchMirror(config);
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
  if (selected('failover')) {
    const result = await benchFailover(config);
    const file = writeResults('failover', result);
    updateDoc(
      'failover',
      `## Planned failover RTO (${result.date.slice(0, 10)})

${result.setup.partitions} partitions (5 topics x 10), ${result.setup.groups} consumer groups with committed offsets on every
partition, mirror caught up, one broker per cluster: time from the start of \`failover\` to its report
(control transitions, drain check, final checkpoint, 1,000 group-partition offsets translated and
committed on the standby, fencing of all 50 partitions). Median of ${result.runs.length} runs.

| metric | median | runs |
| --- | --- | --- |
| RTO (ms) | ${Math.round(result.median.rtoMs)} | ${result.runs.map((r) => r.rtoMs).join(', ')} |

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- failover\`.`,
    );
    process.stderr.write(`failover: ${JSON.stringify(result.median)}\n`);
  }
  if (selected('snapshot')) {
    const result = await benchSnapshot(config);
    const file = writeResults('snapshot', result);
    const m = result.median;
    updateDoc(
      'snapshot',
      `## Snapshot throughput (${result.date.slice(0, 10)})

${result.setup.records.toLocaleString('en')} records of ${result.setup.size} B over ${result.setup.partitions} partitions, one snapshot from scratch
(read with read_committed, encode, gzip, SHA-256, upload ${result.setup.segmentBytes / 2 ** 20} MiB segments to moto),
next to raw PutObject of the same bytes in objects of the segment size against the same endpoint.
Median of ${result.runs.length} runs.

| metric | median |
| --- | --- |
| snapshot MB/s | ${m.snapshotMBps.toFixed(1)} |
| raw PutObject MB/s | ${m.putObjectMBps.toFixed(1)} |
| snapshot / PutObject | ${m.ratio.toFixed(2)} |
| peak RSS of the process (MiB) | ${Math.round(m.peakRssMiB)} |
| RSS growth during the snapshot (MiB) | ${Math.round(m.rssGrowthMiB)} |

Raw: \`${file.split('/').slice(-3).join('/')}\`. Reproduce: \`npm run bench -- snapshot\`.`,
    );
    process.stderr.write(`snapshot: ${JSON.stringify(m)}\n`);
  }
  if (selected('restore')) {
    const result = await benchRestore(config);
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
} finally {
  if (!wasUp) await lab.down();
}
