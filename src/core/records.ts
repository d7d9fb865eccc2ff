/** A record header: Kafka allows duplicate keys and null values, and keeps order. */
export interface Header {
  key: string;
  value: Buffer | null;
}

export type TimestampType = 'CreateTime' | 'LogAppendTime';

/** One committed record read from a source partition. */
export interface SourceRecord {
  offset: number;
  timestamp: number;
  timestampType: TimestampType;
  key: Buffer | null;
  value: Buffer | null;
  headers: Header[];
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

/** A record as it will be produced on the standby: source content plus provenance headers. */
export interface OutgoingRecord {
  sourceOffset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Header[];
}

export const partitionKey = (tp: TopicPartition): string => `${tp.topic}-${tp.partition}`;

/** Items grouped by key, in first-seen order (Map.groupBy, which Node 20 lacks). */
export function groupBy<T, K>(items: Iterable<T>, keyOf: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

/** Kafka offsets are int64; kdr keeps them in JS numbers and refuses any it could not hold exactly. */
export function toOffset(value: string | number | bigint, what = 'offset'): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} ${String(value)} is not a safe integer`);
  return n;
}

/** Bytes a record adds to a produce request (payloads, headers, and the varint framing around them). */
export function recordSize(record: Pick<OutgoingRecord, 'key' | 'value' | 'headers'>): number {
  let size = 24 + (record.key?.length ?? 0) + (record.value?.length ?? 0);
  for (const header of record.headers)
    size += 10 + Buffer.byteLength(header.key) + (header.value?.length ?? 0);
  return size;
}
