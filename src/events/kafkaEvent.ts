import { z } from 'zod';
import type { Header, SourceRecord, TopicPartition } from '../core/records.ts';
import { EventError } from '../errors.ts';

/**
 * The Lambda Kafka event (event sources `aws:kafka` for MSK and `SelfManagedKafka`): records grouped by
 * "topic-partition", key and value base64, headers as a list of single-key objects whose value is a byte
 * array. Parsing checks the shape and turns it into per-partition batches; anything malformed is
 * rejected with the path of the first problem.
 */

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64');
const byteArray = z.array(z.number().int().min(-128).max(255));

const recordSchema = z.object({
  topic: z.string().min(1),
  partition: z.number().int().min(0),
  offset: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  timestamp: z.number().int(),
  timestampType: z.enum(['CREATE_TIME', 'LOG_APPEND_TIME', 'NO_TIMESTAMP_TYPE']),
  key: base64.nullish(),
  value: base64.nullish(),
  headers: z.array(z.record(z.string(), byteArray.nullable())).default([]),
});

const eventSchema = z.object({
  eventSource: z.enum(['aws:kafka', 'SelfManagedKafka']),
  eventSourceArn: z.string().optional(),
  bootstrapServers: z.string().optional(),
  records: z.record(z.string(), z.array(recordSchema)),
});

export interface PartitionBatch extends TopicPartition {
  records: SourceRecord[];
}

function headersOf(list: Record<string, number[] | null>[]): Header[] {
  const headers: Header[] = [];
  for (const entry of list) {
    for (const [key, bytes] of Object.entries(entry)) {
      headers.push({ key, value: bytes === null ? null : Buffer.from(bytes.map((b) => b & 0xff)) });
    }
  }
  return headers;
}

export function parseKafkaEvent(event: unknown): PartitionBatch[] {
  const parsed = eventSchema.safeParse(event);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : '(event)';
    throw new EventError(`malformed Kafka event at ${where}: ${issue.message}`, {
      details: { path: issue.path.map(String), issues: parsed.error.issues.length },
    });
  }
  const batches: PartitionBatch[] = [];
  for (const [key, records] of Object.entries(parsed.data.records)) {
    if (records.length === 0) continue;
    const { topic, partition } = records[0]!;
    if (key !== `${topic}-${partition}`) {
      throw new EventError(`malformed Kafka event: records under "${key}" belong to ${topic}-${partition}`);
    }
    const stray = records.find((r) => r.topic !== topic || r.partition !== partition);
    if (stray) {
      throw new EventError(
        `malformed Kafka event: "${key}" also holds a record of ${stray.topic}-${stray.partition}`,
      );
    }
    batches.push({
      topic,
      partition,
      records: records.map((r) => ({
        offset: r.offset,
        timestamp: r.timestamp,
        timestampType: r.timestampType === 'LOG_APPEND_TIME' ? 'LogAppendTime' : 'CreateTime',
        key: r.key === undefined || r.key === null ? null : Buffer.from(r.key, 'base64'),
        value: r.value === undefined || r.value === null ? null : Buffer.from(r.value, 'base64'),
        headers: headersOf(r.headers),
      })),
    });
  }
  return batches;
}

/**
 * One record as the event carries it (https://docs.aws.amazon.com/lambda/latest/dg/with-kafka.html#smaa-sample-event):
 * key and value base64, headers a list of single-key objects whose value is the header's bytes. AWS's
 * sample has ASCII bytes only; the poller is Java, and AWS's own event libraries read them as signed
 * bytes (aws-lambda-go PR 506, aws-lambda-dotnet PR 1476), so signed bytes they are. A null key is left
 * out (AWS Powertools issue 6508); a null value too (undocumented; the parser reads both forms).
 */
export function eventRecord(topic: string, partition: number, r: SourceRecord) {
  return {
    topic,
    partition,
    offset: r.offset,
    timestamp: r.timestamp,
    timestampType:
      r.timestampType === 'LogAppendTime' ? ('LOG_APPEND_TIME' as const) : ('CREATE_TIME' as const),
    ...(r.key === null ? {} : { key: r.key.toString('base64') }),
    ...(r.value === null ? {} : { value: r.value.toString('base64') }),
    headers: r.headers.map((h) => ({
      [h.key]:
        h.value === null ? null : [...new Int8Array(h.value.buffer, h.value.byteOffset, h.value.length)],
    })),
  };
}

export type EventRecord = ReturnType<typeof eventRecord>;

/** Builds an event as Lambda's Kafka poller delivers it (for tests and `kdr` drills). */
export function toKafkaEvent(
  batches: PartitionBatch[],
  eventSource: 'aws:kafka' | 'SelfManagedKafka' = 'SelfManagedKafka',
): z.input<typeof eventSchema> {
  return {
    eventSource,
    bootstrapServers: 'localhost:9092',
    records: Object.fromEntries(
      batches.map((b) => [
        `${b.topic}-${b.partition}`,
        b.records.map((r) => eventRecord(b.topic, b.partition, r)),
      ]),
    ),
  };
}
