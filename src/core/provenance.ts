import type { Header, OutgoingRecord, SourceRecord, TopicPartition } from './records.ts';

/**
 * Provenance headers on every mirrored record:
 *   kdr.src    = "<source alias>/<topic>/<partition>/<offset>"  where this copy was read from
 *   kdr.origin = "<alias>"                                      the cluster the record was first produced on
 * Topic names cannot contain '/', so the src value parses unambiguously. Headers are claims, not proof:
 * applications forward the headers of records they consumed (Kafka Streams does by default), so a record
 * counts as a kdr copy only when the offset map puts that very record where its kdr.src says it came from
 * (services/provenance.ts). kdr.origin is informational: the cluster the mirrored record was read from.
 */
export const SRC_HEADER = 'kdr.src';
export const ORIGIN_HEADER = 'kdr.origin';

export interface Provenance {
  cluster: string;
  topic: string;
  partition: number;
  offset: number;
}

export function formatSrc(p: Provenance): string {
  return `${p.cluster}/${p.topic}/${p.partition}/${p.offset}`;
}

export function parseSrc(value: Buffer | string | null | undefined): Provenance | undefined {
  if (value === null || value === undefined) return undefined;
  const text = typeof value === 'string' ? value : value.toString('utf8');
  const parts = text.split('/');
  if (parts.length !== 4) return undefined;
  const [cluster, topic, partition, offset] = parts as [string, string, string, string];
  if (!/^\d+$/.test(partition) || !/^\d+$/.test(offset) || !cluster || !topic) return undefined;
  return { cluster, topic, partition: Number(partition), offset: Number(offset) };
}

/** The last value of a header key (Kafka's `lastHeader`). */
export function lastHeader(headers: readonly Header[], key: string): Buffer | null | undefined {
  for (let i = headers.length - 1; i >= 0; i--) if (headers[i]!.key === key) return headers[i]!.value;
  return undefined;
}

/** The cluster a record was first produced on: its kdr.origin header, or the cluster it is read from. */
export function originOf(headers: readonly Header[], readFrom: string): string {
  const origin = lastHeader(headers, ORIGIN_HEADER);
  return origin ? origin.toString('utf8') : readFrom;
}

/**
 * The standby copy of a source record: the record's own headers (minus any kdr.src and kdr.origin it
 * carried) followed by kdr.src and kdr.origin.
 */
/** One read-only Buffer per origin value: the same few aliases on every record, allocated once. */
const originValues = new Map<string, Buffer>();
function originValue(origin: string): Buffer {
  let value = originValues.get(origin);
  if (!value) {
    value = Buffer.from(origin);
    if (originValues.size < 64) originValues.set(origin, value);
  }
  return value;
}

export function withProvenance(
  record: SourceRecord,
  source: TopicPartition,
  sourceAlias: string,
): OutgoingRecord {
  // Not the record's own kdr.origin: that may be a forwarded header (copies of the target's records are
  // never mirrored, so every record that is mirrored was first produced on the source).
  const origin = sourceAlias;
  const headers: Header[] = [];
  for (const h of record.headers) if (h.key !== SRC_HEADER && h.key !== ORIGIN_HEADER) headers.push(h);
  headers.push(
    {
      key: SRC_HEADER,
      value: Buffer.from(
        formatSrc({
          cluster: sourceAlias,
          topic: source.topic,
          partition: source.partition,
          offset: record.offset,
        }),
      ),
    },
    { key: ORIGIN_HEADER, value: originValue(origin) },
  );
  return {
    sourceOffset: record.offset,
    timestamp: record.timestamp,
    key: record.key,
    value: record.value,
    headers,
  };
}

/** The record's headers without kdr's provenance: what the source record carried. */
export function withoutProvenance(headers: readonly Header[]): Header[] {
  return headers.filter((h) => h.key !== SRC_HEADER && h.key !== ORIGIN_HEADER);
}
