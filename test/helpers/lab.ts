import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { execa } from 'execa';
import type { Admin, ITopicConfig, Kafka } from 'kafkajs';
import pWaitFor from 'p-wait-for';
import { labPaths } from '../../infra/local/paths.ts';
import { KafkaAdmin } from '../../src/adapters/kafka/admin.ts';
import { createKafka } from '../../src/adapters/kafka/client.ts';
import { type KdrConfig, loadConfig } from '../../src/config.ts';

/** Helpers shared by the integration tests: every test makes its own uniquely named topics and groups. */

export const config: KdrConfig = loadConfig();

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export type ClusterName = 'primary' | 'standby';

export function kafkaFor(cluster: ClusterName, cfg: KdrConfig = config): Kafka {
  return createKafka(cfg[cluster], `kdr-test-${cluster}`);
}

/** Runs `fn` with a connected admin client and always disconnects it. */
export async function withAdmin<T>(cluster: ClusterName, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafkaFor(cluster).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

/** Creates topics through kdr's own admin adapter, which waits until every partition has a leader. */
export async function createTopics(
  cluster: ClusterName,
  topics: ITopicConfig[],
  cfg: KdrConfig = config,
): Promise<void> {
  const admin = new KafkaAdmin(kafkaFor(cluster, cfg), cluster);
  try {
    for (const t of topics) {
      const configs = Object.fromEntries((t.configEntries ?? []).map((e) => [e.name, e.value]));
      await admin.createTopic(t.topic, t.numPartitions ?? 1, t.replicationFactor ?? -1, configs);
    }
  } finally {
    await admin.close();
  }
}

/** A bounded poll with a message that says what never happened. */
export async function eventually(
  what: string,
  condition: () => Promise<boolean> | boolean,
  timeoutMs = 60_000,
): Promise<void> {
  await pWaitFor(condition, {
    interval: 250,
    timeout: {
      milliseconds: timeoutMs,
      message: new Error(`timed out after ${timeoutMs} ms waiting until ${what}`),
    },
  });
}

/** librdkafka's settings for a cluster's TLS (PEM given inline), so that kcat reaches a TLS lab too. */
function kcatSecurity(cluster: KdrConfig['primary']): string[] {
  if (!cluster.ssl) return [];
  const pem: [string, string | undefined][] = [
    ['ssl.ca.pem', cluster.tls?.ca],
    ['ssl.certificate.pem', cluster.tls?.cert],
    ['ssl.key.pem', cluster.tls?.key],
    ['ssl.key.password', cluster.tls?.passphrase],
  ];
  return ['-X', 'security.protocol=ssl', ...pem.flatMap(([k, v]) => (v ? ['-X', `${k}=${v}`] : []))];
}

/** kcat (librdkafka), an independent client, against one cluster. */
export async function kcat(
  cluster: ClusterName,
  args: string[],
  options: { input?: Buffer | string } = {},
  cfg: KdrConfig = config,
) {
  return execa('kcat', ['-b', cfg[cluster].brokers.join(','), ...kcatSecurity(cfg[cluster]), ...args], {
    encoding: 'buffer',
    timeout: 120_000,
    ...(options.input !== undefined ? { input: options.input } : {}),
  });
}

/** Runs one of Kafka's own command-line tools (same jars as the lab's brokers). */
export async function kafkaTool(mainClass: string, args: string[]) {
  const paths = labPaths();
  const libs = process.env.KAFKA_HOME
    ? path.join(process.env.KAFKA_HOME, 'libs')
    : path.join(paths.kafkaCache, 'libs');
  return execa(
    'java',
    [
      '-Xmx256m',
      `-Dlog4j2.configurationFile=${paths.toolsLog4j}`,
      '-cp',
      path.join(libs, '*'),
      mainClass,
      ...args,
    ],
    { timeout: 120_000, all: true },
  );
}

export const KAFKA_TOOLS = {
  consoleConsumer: 'org.apache.kafka.tools.consumer.ConsoleConsumer',
  consoleProducer: 'org.apache.kafka.tools.ConsoleProducer',
  consumerGroups: 'org.apache.kafka.tools.consumer.group.ConsumerGroupCommand',
  getOffsets: 'org.apache.kafka.tools.GetOffsetShell',
  topics: 'org.apache.kafka.tools.TopicCommand',
  producerPerf: 'org.apache.kafka.tools.ProducerPerformance',
  consumerPerf: 'org.apache.kafka.tools.ConsumerPerformance',
} as const;

export interface KcatRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  timestampType: 'create' | 'logappend' | 'unknown';
  key: Buffer | null;
  value: Buffer | null;
  headers: [string, Buffer | null][];
}

/** kcat -J writes non-ASCII bytes raw and escapes only control characters: read as latin1, every char is a byte. */
const bytesOf = (s: string | null): Buffer | null => (s === null ? null : Buffer.from(s, 'latin1'));

/** Reads a whole topic (or one partition) with kcat, byte-exact, including header order and nulls. */
export async function readWithKcat(
  cluster: ClusterName,
  topic: string,
  options: { partition?: number; isolation?: 'read_committed' | 'read_uncommitted' } = {},
  cfg: KdrConfig = config,
): Promise<KcatRecord[]> {
  const args = [
    '-C',
    '-t',
    topic,
    '-e',
    '-J',
    '-q',
    '-o',
    'beginning',
    '-X',
    `isolation.level=${options.isolation ?? 'read_committed'}`,
  ];
  if (options.partition !== undefined) args.push('-p', String(options.partition));
  const { stdout } = await kcat(cluster, args, {}, cfg);
  const text = Buffer.from(stdout).toString('latin1');
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const j = JSON.parse(line) as {
        topic: string;
        partition: number;
        offset: number;
        tstype: KcatRecord['timestampType'];
        ts: number;
        key: string | null;
        payload: string | null;
        headers?: (string | null)[];
      };
      const headers: [string, Buffer | null][] = [];
      for (let i = 0; i < (j.headers?.length ?? 0); i += 2) {
        headers.push([bytesOf(j.headers![i]!)!.toString('utf8'), bytesOf(j.headers![i + 1] ?? null)]);
      }
      return {
        topic: j.topic,
        partition: j.partition,
        offset: j.offset,
        timestamp: j.ts,
        timestampType: j.tstype,
        key: bytesOf(j.key),
        value: bytesOf(j.payload),
        headers,
      };
    });
}

/** Commits a group's offsets without joining it (kdr's admin adapter; kafkajs's setOffsets takes 5 s). */
export async function commitGroupOffsets(
  cluster: ClusterName,
  group: string,
  topic: string,
  offsets: number[],
  cfg: KdrConfig = config,
): Promise<void> {
  const admin = new KafkaAdmin(kafkaFor(cluster, cfg), cluster);
  try {
    await admin.commitOffsets(
      group,
      offsets.map((offset, partition) => ({ topic, partition, offset })),
    );
  } finally {
    await admin.close();
  }
}
