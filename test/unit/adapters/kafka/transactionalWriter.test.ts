import type { Kafka } from 'kafkajs';
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { registerCodecs } from '../../../../src/adapters/kafka/codecs.ts';
import { RecordTooLargeError, toKdrError } from '../../../../src/adapters/kafka/errors.ts';
import {
  KafkaTransactionalWriterFactory,
  oversizeCompression,
  recordTooLargeError,
  requestBytes,
} from '../../../../src/adapters/kafka/transactionalWriter.ts';
import type { Compression } from '../../../../src/config.ts';
import { withProvenance } from '../../../../src/core/provenance.ts';
import type { OutgoingRecord } from '../../../../src/core/records.ts';
import { ERROR_CODES } from '../../../../src/errors.ts';

const { CompressionTypes, CompressionCodecs } = kafkajs;

const record = (offset: number, bytes: number, fill = 0x61): OutgoingRecord =>
  withProvenance(
    {
      offset,
      timestamp: 1,
      timestampType: 'CreateTime',
      key: null,
      value: Buffer.alloc(bytes, fill),
      headers: [],
    },
    { topic: 'orders', partition: 1 },
    'primary',
  );

/** A kafkajs broker error as the producer throws it (protocol error wrapped by the retrier). */
function brokerError(type: string, code: number): Error {
  const protocol = Object.assign(
    new Error(`The request included a message larger than the max message size`),
    {
      type,
      code,
      retriable: false,
    },
  );
  return Object.assign(new Error('KafkaJSNonRetriableError'), { cause: protocol, retriable: false });
}

/** A fake kafkajs client: records each send's compression, fails sends `fail` says to. */
function fakeKafka(fail?: (compression: number, messages: number) => Error | undefined) {
  const sends: { compression: number; messages: number }[] = [];
  let aborted = 0;
  let committed = 0;
  let next = 100;
  const kafka = {
    producer: () => ({
      connect: async () => {},
      disconnect: async () => {},
      transaction: async () => ({
        send: async ({ compression, messages }: { compression: number; messages: unknown[] }) => {
          sends.push({ compression, messages: messages.length });
          const error = fail?.(compression, messages.length);
          if (error) throw error;
          const baseOffset = next;
          next += messages.length;
          return [{ topicName: 'orders', partition: 1, errorCode: 0, baseOffset: String(baseOffset) }];
        },
        commit: async () => void committed++,
        abort: async () => void aborted++,
      }),
    }),
    // The factory reads the standby topic's limit through an admin client on a refusal: none here.
    admin: () => {
      throw new Error('no admin in this test');
    },
  } as unknown as Kafka;
  return { kafka, sends, counts: () => ({ aborted, committed }) };
}

async function openWriter(kafka: Kafka, compression: Compression) {
  // The writer's logic over the fake producer (connection sharing is the integration tests' subject).
  const factory = new KafkaTransactionalWriterFactory(kafka, 'pair', 'primary', compression, {
    producer: () => kafka.producer(),
    close: async () => {},
  });
  return factory.open({ topic: 'orders', partition: 1 });
}

describe('oversize compression', () => {
  it('uses zstd unless the configured codec is already a high-ratio one', () => {
    expect(oversizeCompression(CompressionTypes.None)).toBe(CompressionTypes.ZSTD);
    expect(oversizeCompression(CompressionTypes.LZ4)).toBe(CompressionTypes.ZSTD);
    expect(oversizeCompression(CompressionTypes.Snappy)).toBe(CompressionTypes.ZSTD);
    expect(oversizeCompression(CompressionTypes.GZIP)).toBe(CompressionTypes.GZIP);
    expect(oversizeCompression(CompressionTypes.ZSTD)).toBe(CompressionTypes.ZSTD);
  });

  it('the registered zstd codec compresses a 4 MB compressible value for producing', async () => {
    registerCodecs();
    const codec = (
      CompressionCodecs as Record<number, () => { compress(e: { buffer: Buffer }): Promise<Buffer> }>
    )[CompressionTypes.ZSTD]!();
    const input = Buffer.alloc(4_000_000, 'kafka');
    const compressed = await codec.compress({ buffer: input });
    expect(compressed.length).toBeLessThan(10_000);
    // A zstd frame (magic 0xFD2FB528, little-endian).
    expect(compressed.readUInt32LE(0)).toBe(0xfd2fb528);
  });
});

describe('KafkaTransactionalWriter', () => {
  it('sends a request over compressAbove with zstd, the others with the configured codec', async () => {
    const { kafka, sends } = fakeKafka();
    const writer = await openWriter(kafka, 'none');
    const small = [record(1, 10), record(2, 10)];
    const big = [record(3, 5000)];
    const offsets = await writer.write({ topic: 'orders', partition: 1 }, [small, big, [record(4, 10)]], {
      compressAbove: 1000,
    });
    expect(offsets).toEqual([100, 101, 102, 103]);
    expect(sends.map((s) => s.compression)).toEqual([
      CompressionTypes.None,
      CompressionTypes.ZSTD,
      CompressionTypes.None,
    ]);
  });

  it('keeps the configured codec without compressAbove, and gzip above it', async () => {
    const lz4 = fakeKafka();
    await (await openWriter(lz4.kafka, 'lz4')).write({ topic: 'orders', partition: 1 }, [[record(1, 5000)]]);
    expect(lz4.sends.map((s) => s.compression)).toEqual([CompressionTypes.LZ4]);
    const gzip = fakeKafka();
    await (await openWriter(gzip.kafka, 'gzip')).write(
      { topic: 'orders', partition: 1 },
      [[record(1, 5000)]],
      {
        compressAbove: 10,
      },
    );
    expect(gzip.sends.map((s) => s.compression)).toEqual([CompressionTypes.GZIP]);
  });

  it('compares the uncompressed request size, not the record count, with compressAbove', async () => {
    const { kafka, sends } = fakeKafka();
    const request = [record(1, 400), record(2, 400), record(3, 400)];
    const size = requestBytes(request);
    await (await openWriter(kafka, 'none')).write({ topic: 'orders', partition: 1 }, [request], {
      compressAbove: size,
    });
    await (await openWriter(kafka, 'none')).write({ topic: 'orders', partition: 1 }, [request], {
      compressAbove: size - 1,
    });
    expect(sends.map((s) => s.compression)).toEqual([CompressionTypes.None, CompressionTypes.ZSTD]);
  });

  it('turns MESSAGE_TOO_LARGE into a non-retryable RECORD_TOO_LARGE naming the source record', async () => {
    const { kafka, counts } = fakeKafka((compression) =>
      compression === CompressionTypes.ZSTD ? brokerError('MESSAGE_TOO_LARGE', 10) : undefined,
    );
    const writer = await openWriter(kafka, 'none');
    const error = await writer
      .write({ topic: 'orders', partition: 1 }, [[record(1, 10)], [record(42, 5000, 0)]], {
        compressAbove: 1000,
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RecordTooLargeError);
    const e = error as RecordTooLargeError;
    expect(e.code).toBe('RECORD_TOO_LARGE');
    expect(e.retryable).toBe(false);
    expect(e.message).toContain('source orders partition 1 offset 42');
    expect(e.message).toContain('sent zstd-compressed, alone in its request');
    expect(e.message).toContain('could not be read');
    expect(e.message).toContain('Raise max.message.bytes on the standby topic orders');
    expect(e.details).toMatchObject({
      topic: 'orders',
      partition: 1,
      sourceTopic: 'orders',
      sourcePartition: 1,
      sourceOffset: 42,
      compression: 'zstd',
      maxMessageBytes: null,
    });
    // One abort is the fence when the writer opened, one the failed transaction.
    expect(counts()).toEqual({ aborted: 2, committed: 0 });
  });

  it('RECORD_LIST_TOO_LARGE too, and other errors keep their codes', async () => {
    const list = fakeKafka(() => brokerError('RECORD_LIST_TOO_LARGE', 18));
    const error = await (await openWriter(list.kafka, 'none'))
      .write({ topic: 'orders', partition: 1 }, [[record(7, 10)]])
      .catch((e: unknown) => e);
    expect((error as RecordTooLargeError).code).toBe('RECORD_TOO_LARGE');
    expect((error as Error).message).toContain('offset 7');
    const other = fakeKafka(() => brokerError('NOT_LEADER_OR_FOLLOWER', 6));
    const notLeader = await (await openWriter(other.kafka, 'none'))
      .write({ topic: 'orders', partition: 1 }, [[record(7, 10)]])
      .catch((e: unknown) => e);
    expect((notLeader as RecordTooLargeError).code).not.toBe('RECORD_TOO_LARGE');
  });
});

describe('recordTooLargeError', () => {
  it('names the largest record of a request, its size, the limit and the fix', () => {
    const request = [record(10, 10), record(11, 3000), record(12, 10)];
    const error = recordTooLargeError({
      target: { topic: 'dr.orders', partition: 1 },
      request,
      compression: CompressionTypes.GZIP,
      limit: 2048,
      cause: brokerError('MESSAGE_TOO_LARGE', 10),
      writer: 'kdr-pair-primary-orders-1',
    });
    expect(error.message).toContain('source orders partition 1 offset 11');
    expect(error.message).toContain('standby topic dr.orders (partition 1) takes at most 2048 bytes');
    expect(error.message).toContain('in a request of 3 records (source offsets 10-12');
    expect(error.message).toContain('sent gzip-compressed');
    expect(error.message).toContain(`max.message.bytes=${requestBytes(request) + 1024}`);
    expect(error.details).toMatchObject({ sourceOffset: 11, maxMessageBytes: 2048, requestRecords: 3 });
    expect(ERROR_CODES[error.code].retryable).toBe(false);
  });

  it('toKdrError maps a size refusal without context to the same named error', () => {
    const error = toKdrError(brokerError('MESSAGE_TOO_LARGE', 10), 'writing');
    expect(error).toBeInstanceOf(RecordTooLargeError);
    expect(error.retryable).toBe(false);
  });
});
