import { execSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../infra/local/paths.ts';
import { KAFKA_VERSION } from '../infra/local/topology.ts';
import { KafkaAdmin } from '../src/adapters/kafka/admin.ts';
import { createKafka } from '../src/adapters/kafka/client.ts';
import type { KdrConfig } from '../src/config.ts';
import { KAFKA_TOOLS, kafkaTool } from '../test/helpers/lab.ts';

/** Shared pieces of the benchmarks: medians, machine facts, and the results file. */

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function machine() {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  let java = 'unknown';
  try {
    java = execSync('java -version 2>&1').toString().split('\n')[0]!.trim();
  } catch {
    // reported as unknown
  }
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    java,
    kafka: KAFKA_VERSION,
    kdr: pkg.version,
    kafkajs: JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules/kafkajs/package.json'), 'utf8'))
      .version as string,
  };
}

export const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');

export function writeResults(name: string, results: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  // Everything one `npm run bench` measured goes to <date>.json; each benchmark also to <date>-<name>.json.
  const date = new Date().toISOString().slice(0, 10);
  const file = path.join(RESULTS_DIR, name === 'all' ? `${date}.json` : `${date}-${name}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  return file;
}

/** Replaces the section between `<!-- bench:name -->` markers in docs/BENCHMARKS.md. */
export function updateDoc(name: string, markdown: string): void {
  const file = path.join(REPO_ROOT, 'docs', 'BENCHMARKS.md');
  let doc: string;
  try {
    doc = readFileSync(file, 'utf8');
  } catch {
    doc = '# Benchmarks\n\nProduced by `npm run bench`; raw results in `bench/results/`.\n';
  }
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const block = `${start}\n${markdown.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  doc =
    i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, doc);
}

/** Creates a topic through kdr's admin adapter (which waits for every partition's leader). */
export async function createBenchTopic(
  config: KdrConfig,
  cluster: 'primary' | 'standby',
  topic: string,
  partitions: number,
): Promise<void> {
  const admin = new KafkaAdmin(createKafka(config[cluster], 'kdr-bench'), cluster);
  try {
    await admin.createTopic(topic, partitions, 1, {});
  } finally {
    await admin.close();
  }
}

/**
 * Kafka's own producer perf tool writing `records` records of `size` bytes: it loads the data (fast, and
 * independent of the code measured) and is the producer limit. Returns its own records/s figure.
 */
export async function producerPerf(
  config: KdrConfig,
  cluster: 'primary' | 'standby',
  topic: string,
  records: number,
  size: number,
): Promise<number> {
  const result = await kafkaTool(KAFKA_TOOLS.producerPerf, [
    '--topic',
    topic,
    '--num-records',
    String(records),
    '--record-size',
    String(size),
    '--throughput',
    '-1',
    '--producer-props',
    `bootstrap.servers=${config[cluster].brokers.join(',')}`,
    'acks=all',
    'linger.ms=5',
    'batch.size=262144',
  ]);
  const summary = /\d+ records sent, ([\d.]+) records\/sec/.exec(String(result.all ?? result.stdout));
  if (!summary)
    throw new Error(`no summary line from the producer perf tool: ${String(result.stdout).slice(-400)}`);
  return Number(summary[1]);
}

function rssMiB(pid: number): number {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('VmRSS:'));
    return line ? Number(line.split(/\s+/)[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Peak RSS of one process, sampled every 100 ms (kdr runs in one node process; MM2 is one JVM). */
/** A process and every process under it (the workers of `kdr mirror --workers`). */
function withDescendants(pid: number): number[] {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(' ')
      .filter(Boolean)
      .map(Number);
  } catch {
    // gone
  }
  return [pid, ...children.flatMap(withDescendants)];
}

/** Peak RSS of a process with its descendants, summed. */
export function samplePeak(pid: number): { stop: () => number } {
  let peak = 0;
  const sample = () => withDescendants(pid).reduce((n, p) => n + rssMiB(p), 0);
  const timer = setInterval(() => (peak = Math.max(peak, sample())), 100);
  return {
    stop: () => {
      clearInterval(timer);
      return peak;
    },
  };
}
