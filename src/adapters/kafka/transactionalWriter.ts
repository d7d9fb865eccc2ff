import type { Kafka, Message, Producer } from 'kafkajs';
import type { Compression } from '../../config.ts';
import type { OutgoingRecord, TopicPartition } from '../../core/records.ts';
import { KafkaError } from '../../errors.ts';
import type {
  MultiPartitionWriter,
  PartitionBatch,
  TransactionalWriter,
  TransactionalWriterFactory,
} from '../../ports/kafka.ts';
import { compressionType } from './codecs.ts';
import { kafkaProtocolError, toKdrError } from './errors.ts';

const UNKNOWN_SERVER_ERROR = -1;

/**
 * One idempotent, transactional kafkajs producer per source partition, with a transactional.id derived
 * from the pair, the source cluster, topic and partition: opening it (InitProducerId) bumps the epoch, which fences any older
 * writer of the same partition and completes or aborts its open transaction.
 */

export function transactionalId(pair: string, sourceAlias: string, source: TopicPartition): string {
  return `kdr-${pair}-${sourceAlias}-${source.topic}-${source.partition}`;
}

class KafkaTransactionalWriter implements TransactionalWriter, MultiPartitionWriter {
  private broken = false;

  constructor(
    private readonly producer: Producer,
    private readonly id: string,
    private readonly compression: number,
  ) {}

  async write(target: TopicPartition, requests: OutgoingRecord[][]): Promise<number[]> {
    return (await this.writeMany([{ target, requests }]))[0]!;
  }

  async writeMany(batches: PartitionBatch[]): Promise<number[][]> {
    if (this.broken)
      throw new KafkaError('KAFKA_REQUEST_FAILED', `writer ${this.id} failed before; open a new one`);
    const transaction = await this.producer.transaction().catch((error) => {
      this.broken = true;
      throw toKdrError(error, `beginning a transaction as ${this.id}`);
    });
    const where = batches.map((b) => `${b.target.topic}-${b.target.partition}`).join(', ');
    try {
      const all: number[][] = [];
      for (const { target, requests } of batches) {
        const offsets: number[] = [];
        for (const request of requests) {
          const [metadata] = await transaction.send({
            topic: target.topic,
            acks: -1,
            compression: this.compression,
            messages: request.map(
              (r) =>
                ({
                  partition: target.partition,
                  key: r.key,
                  value: r.value,
                  timestamp: String(r.timestamp),
                  headerList: r.headers,
                }) as Message,
            ),
          });
          const base = Number(metadata?.baseOffset);
          if (
            !metadata ||
            metadata.partition !== target.partition ||
            !Number.isSafeInteger(base) ||
            base < 0
          ) {
            throw new KafkaError(
              'KAFKA_REQUEST_FAILED',
              `unexpected produce response ${JSON.stringify(metadata)}`,
            );
          }
          for (let i = 0; i < request.length; i++) offsets.push(base + i);
        }
        all.push(offsets);
      }
      await transaction.commit();
      return all;
    } catch (error) {
      // Whatever happened, this producer is done: the next attempt opens a new one, which fences this one
      // and settles the transaction (committed if the commit reached the coordinator, aborted otherwise).
      this.broken = true;
      await transaction.abort().catch(() => {});
      const doing = `writing ${where} as ${this.id}`;
      const details = batches.length === 1 ? { ...batches[0]!.target } : { partitions: where };
      // Kafka 4.3's coordinator answers UNKNOWN_SERVER_ERROR to an EndTxn that races a fencing
      // InitProducerId ("transition to ONGOING while it already a pending state PREPARE_EPOCH_FENCE"): the
      // commit did not apply and the fence aborts the transaction. Whatever the server's reason, a new writer
      // fences and recovers from the target's tail, so trying again is always safe.
      if (kafkaProtocolError(error).code === UNKNOWN_SERVER_ERROR) {
        throw new KafkaError(
          'KAFKA_UNAVAILABLE',
          `${doing} failed (UNKNOWN_SERVER_ERROR, outcome settled by the next writer): ${(error as Error).message}`,
          { cause: error, details },
        );
      }
      throw toKdrError(error, doing, details);
    }
  }

  async close(): Promise<void> {
    await this.producer.disconnect().catch(() => {});
  }
}

export class KafkaTransactionalWriterFactory implements TransactionalWriterFactory {
  private readonly open_ = new Set<KafkaTransactionalWriter>();

  constructor(
    private readonly kafka: Kafka,
    private readonly pair: string,
    private readonly sourceAlias: string,
    private readonly compression: Compression,
  ) {}

  open(source: TopicPartition): Promise<TransactionalWriter> {
    return this.openWithId(transactionalId(this.pair, this.sourceAlias, source), { ...source });
  }

  async openWithId(id: string, details: Record<string, unknown> = {}): Promise<KafkaTransactionalWriter> {
    const producer = this.kafka.producer({
      transactionalId: id,
      // kafkajs makes every transactional send idempotent; idempotent: true here would only spend an extra
      // non-transactional InitProducerId at connect.
      idempotent: false,
      maxInFlightRequests: 1,
      transactionTimeout: 60_000,
      allowAutoTopicCreation: false,
      // The coordinator answers CONCURRENT_TRANSACTIONS until the previous commit's markers are written;
      // kafkajs's default 300 ms backoff would cap a partition at ~3 transactions per second.
      retry: { initialRetryTime: 10, maxRetryTime: 1000, retries: 12, factor: 0.2, multiplier: 1.6 },
    });
    try {
      await producer.connect();
      // kafkajs sends the transactional InitProducerId only when the first transaction begins. Opening must
      // fence *now*: the caller reads the standby's tail next, and no older writer may commit after that.
      const fence = await producer.transaction();
      await fence.abort(); // nothing was sent: no EndTxn goes out
    } catch (error) {
      await producer.disconnect().catch(() => {});
      throw toKdrError(error, `opening the transactional writer ${id}`, details);
    }
    const writer = new KafkaTransactionalWriter(producer, id, compressionType(this.compression));
    this.open_.add(writer);
    const close = writer.close.bind(writer);
    writer.close = async () => {
      this.open_.delete(writer);
      await close();
    };
    return writer;
  }

  async close(): Promise<void> {
    await Promise.all([...this.open_].map((w) => w.close()));
  }
}
