import pLimit from 'p-limit';
import type { SourceRecord, TopicPartition } from '../core/records.ts';
import { isInternalTopic } from '../core/topicSync.ts';
import { describeError, KafkaError } from '../errors.ts';
import type { PartitionBatch } from '../events/kafkaEvent.ts';
import type { Logger } from '../logger.ts';
import type { PartitionReader } from '../ports/kafka.ts';
import type { BatchResult, MirrorEngine } from './mirror.ts';

/**
 * Mirrors the batches of one Lambda invocation. By default each partition's offset range is re-read
 * from the source with read_committed instead of trusting the event: the event source's isolation level
 * is not documented (aborted records must not be mirrored), and its header format cannot carry every
 * header exactly. The event's records must agree with what the source returns.
 */

export interface EventMirrorResult {
  partitions: (BatchResult & { lagOffsets?: number })[];
  skippedTopics: string[];
  recordsMirrored: number;
}

export async function mirrorEvent(
  deps: {
    engine: MirrorEngine;
    sourceReader: PartitionReader;
    selectTopic: (topic: string) => boolean;
    logger: Logger;
  },
  batches: PartitionBatch[],
  options: { refetch: boolean; concurrency: number },
): Promise<EventMirrorResult> {
  const skippedTopics = [
    ...new Set(
      batches.filter((b) => !deps.selectTopic(b.topic) || isInternalTopic(b.topic)).map((b) => b.topic),
    ),
  ];
  for (const topic of skippedTopics)
    deps.logger.warn('not mirroring a topic outside the selection', { topic });
  const limit = pLimit(options.concurrency);
  const settled = await Promise.allSettled(
    batches
      .filter((b) => !skippedTopics.includes(b.topic))
      .map((batch) =>
        limit(async () => {
          const tp: TopicPartition = { topic: batch.topic, partition: batch.partition };
          // An event need not follow the one before (a reset, a batch the event source gave up on): the
          // engine reads any gap before it from the source.
          if (!options.refetch) return deps.engine.mirrorBatch(tp, batch.records, { checkContinuity: true });
          const { records, lastStable } = await refetch(deps.sourceReader, tp, batch.records);
          const result = await deps.engine.mirrorBatch(tp, records, { checkContinuity: true });
          return { ...result, lagOffsets: Math.max(0, lastStable - 1 - (result.lastMirrored ?? -1)) };
        }),
      ),
  );
  const failures = settled.flatMap((s, i) =>
    s.status === 'rejected' ? [{ batch: batches[i]!, error: s.reason }] : [],
  );
  if (failures.length > 0) {
    const summary = failures
      .map((f) => `${f.batch.topic}-${f.batch.partition}: ${describeError(f.error)}`)
      .join('; ');
    // Failing the invocation makes the event source deliver the batch again; partitions that did succeed
    // are skipped then, because the standby already has them.
    throw new KafkaError(
      'KAFKA_UNAVAILABLE',
      `${failures.length} of ${settled.length} partition batches failed: ${summary}`,
      {
        cause: failures[0]!.error,
      },
    );
  }
  const partitions = settled.map(
    (s) => (s as PromiseFulfilledResult<BatchResult & { lagOffsets?: number }>).value,
  );
  return { partitions, skippedTopics, recordsMirrored: partitions.reduce((n, p) => n + p.mirrored, 0) };
}

async function refetch(reader: PartitionReader, tp: TopicPartition, delivered: SourceRecord[]) {
  const offsets = delivered.map((r) => r.offset);
  const end = Math.max(...offsets) + 1;
  const [now] = await reader.offsets(tp.topic, [tp.partition]);
  const logStart = now?.logStart ?? 0;
  // Records the source deleted since the event was read are in hand only: they are mirrored as delivered.
  const records: SourceRecord[] = delivered.filter((r) => r.offset < logStart);
  const first = Math.max(Math.min(...offsets), logStart);
  let lastStable = now?.lastStable ?? end;
  let offset = first;
  while (offset < end) {
    const result = await reader.fetch(tp, offset);
    lastStable = result.lastStable;
    records.push(...result.records.filter((r) => r.offset >= first && r.offset < end));
    if (result.nextOffset <= offset) break; // nothing committed left in the range (aborted, or beyond the stable end)
    offset = result.nextOffset;
  }
  if (end > lastStable) {
    // The event holds records of a transaction still open on the source. Skipping them now would lose
    // them if it commits (the event source will not deliver them again): fail, so the batch comes back.
    throw new KafkaError(
      'KAFKA_UNAVAILABLE',
      `${tp.topic}-${tp.partition}: the event reaches offset ${end - 1} but the source is only stable up to ${lastStable - 1} (an open transaction); retry later`,
    );
  }
  const byOffset = new Map(records.map((r) => [r.offset, r]));
  for (const d of delivered) {
    const r = byOffset.get(d.offset);
    if (r && !(equalBytes(r.key, d.key) && equalBytes(r.value, d.value))) {
      throw new KafkaError(
        'KAFKA_REQUEST_FAILED',
        `the event's record ${tp.topic}-${tp.partition}@${d.offset} differs from the source's: the event does not come from the configured primary cluster`,
      );
    }
  }
  return { records, lastStable };
}

function equalBytes(a: Buffer | null, b: Buffer | null): boolean {
  return a === null || b === null ? a === b : a.equals(b);
}
