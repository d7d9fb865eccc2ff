import { createHash } from 'node:crypto';
import type { Message } from 'kafkajs';
import type { KdrConfig } from '../../src/config.ts';
import { lastHeader, parseSrc, SRC_HEADER, withoutProvenance } from '../../src/core/provenance.ts';
import type { Header, SourceRecord, TopicPartition } from '../../src/core/records.ts';
import type { PartitionReader } from '../../src/ports/kafka.ts';
import { type ClusterName, type KcatRecord, kafkaFor, readWithKcat } from './lab.ts';

/** Deterministic test records covering every edge case a mirror must keep byte for byte. */

export interface TestRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: Header[];
  timestamp: number;
}

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(random: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256);
  return b;
}

/**
 * Record i of a stream: null keys, tombstones, empty values, binary keys and values, headers with null
 * values, duplicate keys and binary values, timestamps at the epoch and before 2001.
 */
export function edgeCaseRecord(i: number, random: () => number, now: number): TestRecord {
  const kind = i % 10;
  const headers: Header[] = [];
  if (kind === 1 || kind === 5 || kind === 7) {
    headers.push(
      { key: 'trace', value: Buffer.from(`t-${i}`) },
      { key: 'nullable', value: null },
      { key: 'trace', value: bytes(random, 4) },
      { key: 'empty', value: Buffer.alloc(0) },
    );
  }
  if (kind === 8) headers.push({ key: 'bin', value: Buffer.from([0, 255, 10, 13, 34, 92]) });
  return {
    key: kind === 2 ? null : kind === 3 ? bytes(random, 8) : Buffer.from(`key-${i % 97}`),
    value:
      kind === 4
        ? null
        : kind === 6
          ? Buffer.alloc(0)
          : kind === 9
            ? bytes(random, 200 + Math.floor(random() * 800))
            : Buffer.from(`value-${i}-${'x'.repeat(i % 50)}`),
    headers,
    // Epoch, pre-2001 (12 digits) and recent timestamps in the same batches.
    timestamp: kind === 0 && i % 20 === 0 ? 0 : kind === 5 ? 999_999_999_000 + i : now - 1000 + (i % 1000),
  };
}

export function toMessage(record: TestRecord, partition?: number): Message {
  return {
    ...(partition !== undefined ? { partition } : {}),
    key: record.key,
    value: record.value,
    timestamp: String(record.timestamp),
    headerList: record.headers,
  } as unknown as Message;
}

/** Produces records to one partition with kafkajs in batches (optionally compressed). */
export async function produce(
  cluster: ClusterName,
  topic: string,
  partition: number,
  records: TestRecord[],
  options: { compression?: number; batch?: number } = {},
): Promise<void> {
  const producer = kafkaFor(cluster).producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const size = options.batch ?? 500;
    for (let i = 0; i < records.length; i += size) {
      await producer.send({
        topic,
        acks: -1,
        ...(options.compression !== undefined ? { compression: options.compression } : {}),
        messages: records.slice(i, i + size).map((r) => toMessage(r, partition)),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

/** `count` plain values into each of `partitions` of a primary topic, one idempotent send per partition. */
export async function fillPartitions(
  topic: string,
  partitions: number[],
  count: number,
  value: (partition: number, i: number) => string,
): Promise<void> {
  const producer = kafkaFor('primary').producer({ idempotent: true });
  await producer.connect();
  try {
    for (const partition of partitions)
      await producer.send({
        topic,
        messages: Array.from({ length: count }, (_, i) => ({ partition, value: value(partition, i) })),
      });
  } finally {
    await producer.disconnect();
  }
}

/** One canonical byte string per record: what "identical" means for key, value, headers and timestamp. */
export function canonical(r: {
  key: Buffer | null;
  value: Buffer | null;
  headers: [string, Buffer | null][] | Header[];
  timestamp: number;
}): Buffer {
  const parts: Buffer[] = [];
  const field = (b: Buffer | null) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(b === null ? -1 : b.length);
    parts.push(len);
    if (b) parts.push(b);
  };
  field(r.key);
  field(r.value);
  const headers = r.headers.map((h) => (Array.isArray(h) ? { key: h[0], value: h[1] } : h));
  field(Buffer.from(String(headers.length)));
  for (const h of headers) {
    field(Buffer.from(h.key));
    field(h.value);
  }
  field(Buffer.from(String(r.timestamp)));
  return Buffer.concat(parts);
}

export interface PartitionComparison {
  topic: string;
  partition: number;
  source: number;
  standby: number;
}

/**
 * Reads both clusters with kcat (an independent client) and compares every partition record by record:
 * same order, same key, value, headers (kdr's provenance headers aside) and timestamp, and each standby
 * record's kdr.src naming exactly the source record at that position. Returns a sha256 over each side.
 */
export async function compareClusters(topics: string[], cfg?: KdrConfig) {
  const problems: string[] = [];
  const sourceHash = createHash('sha256');
  const standbyHash = createHash('sha256');
  const partitions: PartitionComparison[] = [];
  let records = 0;
  for (const topic of [...topics].sort()) {
    const [source, standby] = await Promise.all([
      readWithKcat('primary', topic, {}, cfg),
      readWithKcat('standby', topic, {}, cfg),
    ]);
    const byPartition = (rs: KcatRecord[]) => {
      const map = new Map<number, KcatRecord[]>();
      for (const r of rs) map.set(r.partition, [...(map.get(r.partition) ?? []), r]);
      return map;
    };
    const s = byPartition(source);
    const t = byPartition(standby);
    for (const partition of [...new Set([...s.keys(), ...t.keys()])].sort((a, b) => a - b)) {
      const src = s.get(partition) ?? [];
      const dst = t.get(partition) ?? [];
      partitions.push({ topic, partition, source: src.length, standby: dst.length });
      if (src.length !== dst.length)
        problems.push(`${topic}-${partition}: ${src.length} source records, ${dst.length} on the standby`);
      for (let i = 0; i < Math.min(src.length, dst.length); i++) {
        const a = src[i]!;
        const b = dst[i]!;
        const provenance = parseSrc(
          lastHeader(
            b.headers.map(([key, value]) => ({ key, value })),
            SRC_HEADER,
          ),
        );
        const stripped = withoutProvenance(b.headers.map(([key, value]) => ({ key, value })));
        const sourceBytes = canonical({ ...a, headers: a.headers });
        const standbyBytes = canonical({ ...b, headers: stripped });
        if (!sourceBytes.equals(standbyBytes))
          problems.push(`${topic}-${partition}: record ${i} (source offset ${a.offset}) differs`);
        if (
          provenance?.offset !== a.offset ||
          provenance.topic !== topic ||
          provenance.partition !== partition
        ) {
          problems.push(
            `${topic}-${partition}: standby record ${b.offset} says it is ${JSON.stringify(provenance)}, expected source offset ${a.offset}`,
          );
        }
        if (b.timestampType !== 'create')
          problems.push(
            `${topic}-${partition}: standby record ${b.offset} has timestamp type ${b.timestampType}`,
          );
        if (problems.length > 20) break;
      }
      for (const r of src) sourceHash.update(canonical(r));
      for (const r of dst)
        standbyHash.update(
          canonical({ ...r, headers: withoutProvenance(r.headers.map(([key, value]) => ({ key, value }))) }),
        );
      records += src.length;
    }
  }
  return {
    problems,
    partitions,
    records,
    sourceDigest: sourceHash.digest('hex'),
    standbyDigest: standbyHash.digest('hex'),
  };
}

/** Source offsets found on a standby partition, in standby order (from kdr.src). */
export async function mirroredSourceOffsets(topic: string, partition: number): Promise<number[]> {
  const records = await readWithKcat('standby', topic, { partition });
  return records.map(
    (r) =>
      parseSrc(
        lastHeader(
          r.headers.map(([key, value]) => ({ key, value })),
          SRC_HEADER,
        ),
      )!.offset,
  );
}

/** Every committed record of a partition, from its log start to its last stable offset, through kdr's reader. */
export async function readPartition(reader: PartitionReader, tp: TopicPartition): Promise<SourceRecord[]> {
  const [offsets] = await reader.offsets(tp.topic, [tp.partition]);
  const all: SourceRecord[] = [];
  for await (const records of reader.readRange(tp, offsets!.logStart, offsets!.lastStable))
    all.push(...records);
  return all;
}
