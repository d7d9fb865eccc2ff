import { setTimeout as sleep } from 'node:timers/promises';
import type { Kafka, Message, Producer } from 'kafkajs';
import createProducer from 'kafkajs/src/producer/index.js';
import type { Compression } from '../../config.ts';
import { lastHeader, parseSrc, SRC_HEADER } from '../../core/provenance.ts';
import { type OutgoingRecord, recordSize, type TopicPartition } from '../../core/records.ts';
import { describeError, isKdrError, KafkaError } from '../../errors.ts';
import type {
  MultiPartitionWriter,
  PartitionBatch,
  TransactionalWriter,
  TransactionalWriterFactory,
  WriterToken,
} from '../../ports/kafka.ts';
import { KafkaAdmin } from './admin.ts';
import { createProducerCluster, type KafkajsCluster } from './cluster.ts';
import { compressionType } from './codecs.ts';
import { isTooLarge, kafkaProtocolError, RecordTooLargeError, toKdrError } from './errors.ts';

const UNKNOWN_SERVER_ERROR = -1;
const ZSTD = compressionType('zstd');
const LOW_RATIO = new Set([compressionType('none'), compressionType('lz4'), compressionType('snappy')]);
const CODEC_NAMES: Record<number, Compression> = {
  [compressionType('none')]: 'none',
  [compressionType('gzip')]: 'gzip',
  [compressionType('snappy')]: 'snappy',
  [compressionType('lz4')]: 'lz4',
  [compressionType('zstd')]: 'zstd',
};

/**
 * The codec of a request over `compressAbove`: one record the source took compressed, which must fit the
 * standby's max.message.bytes compressed too. What counts there is the ratio, not the speed (such requests
 * are rare and carry one record), so:
 * - none, lz4, snappy → zstd. lz4 and snappy are fast codecs with a poor ratio: a record that a producer's
 *   zstd or gzip squeezed under the source limit can stay over it under lz4 (the Lambda default). zstd
 *   (level 3, the WASM build registered in codecs.ts) has the best ratio of the codecs kdr can write, and
 *   kafkajs 2.2.4 negotiates Produce v7 with Kafka ≥ 2.1 brokers (4.3 serves v3-v12), the version ZSTD
 *   batches need.
 * - gzip, zstd → kept. Both are high-ratio codecs, and an operator who chose gzip may have standby
 *   consumers that read nothing else (kafkajs without codec plugins).
 */
export function oversizeCompression(configured: number): number {
  return LOW_RATIO.has(configured) ? ZSTD : configured;
}

/** Bytes the records of a request take uncompressed (payloads, headers, record framing). */
export function requestBytes(request: readonly OutgoingRecord[]): number {
  let bytes = 0;
  for (const r of request) bytes += recordSize(r);
  return bytes;
}

/**
 * The error for a request the standby refused for its size: which source record (its kdr.src header, or
 * the target partition and source offset), how big, the standby topic's limit when it could be read, and
 * what to do. The largest record of the request is named: a request over the limit holds that record
 * alone when the plan made it.
 */
export function recordTooLargeError(input: {
  target: TopicPartition;
  request: readonly OutgoingRecord[];
  compression: number;
  limit: number | undefined;
  cause: unknown;
  writer: string;
}): RecordTooLargeError {
  const { target, request, compression, limit, cause, writer } = input;
  let largest = request[0]!;
  for (const r of request) if (recordSize(r) > recordSize(largest)) largest = r;
  const size = recordSize(largest);
  const total = requestBytes(request);
  const src = parseSrc(lastHeader(largest.headers, SRC_HEADER));
  const source = src
    ? { topic: src.topic, partition: src.partition, offset: src.offset }
    : { topic: target.topic, partition: target.partition, offset: largest.sourceOffset };
  const codec = CODEC_NAMES[compression] ?? String(compression);
  const how = `${codec === 'none' ? 'sent uncompressed' : `sent ${codec}-compressed`}${
    request.length === 1
      ? ', alone in its request'
      : ` in a request of ${request.length} records (source offsets ${request[0]!.sourceOffset}-${request.at(-1)!.sourceOffset}, ${total} bytes)`
  }`;
  const takes =
    limit === undefined
      ? 'takes less (its max.message.bytes could not be read)'
      : `takes at most ${limit} bytes per record batch (max.message.bytes)`;
  // The uncompressed size plus room for the batch header and the codec's framing always fits.
  const enough = total + 1024;
  return new RecordTooLargeError(
    `record too large for the standby: source ${source.topic} partition ${source.partition} offset ${source.offset} is ${size} bytes uncompressed (${how}), ` +
      `and the standby topic ${target.topic} (partition ${target.partition}) ${takes}; the broker said ${kafkaProtocolError(cause).type ?? describeError(cause)}. ` +
      `Raise max.message.bytes on the standby topic ${target.topic} to at least the record's compressed size (${enough} always suffices; kdr's topic sync never lowers it), ` +
      `e.g. kafka-configs --alter --entity-type topics --entity-name ${target.topic} --add-config max.message.bytes=${enough}; ` +
      `then run the command again (a running \`kdr mirror\` retries by itself) (writer ${writer})`,
    {
      cause,
      details: {
        topic: target.topic,
        partition: target.partition,
        sourceTopic: source.topic,
        sourcePartition: source.partition,
        sourceOffset: source.offset,
        recordBytes: size,
        requestRecords: request.length,
        requestBytes: total,
        compression: codec,
        maxMessageBytes: limit ?? null,
      },
    },
  );
}

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
    /** The standby topic's max.message.bytes, read only to explain a refusal; undefined if unknown. */
    private readonly limitOf: (topic: string) => Promise<number | undefined> = async () => undefined,
    readonly token?: WriterToken,
  ) {}

  async write(
    target: TopicPartition,
    requests: OutgoingRecord[][],
    options: { compressAbove?: number; beforeCommit?: (offsets: number[]) => Promise<void> } = {},
  ): Promise<number[]> {
    const { beforeCommit, ...rest } = options;
    return (
      await this.writeMany([{ target, requests }], {
        ...rest,
        ...(beforeCommit ? { beforeCommit: (all: number[][]) => beforeCommit(all[0]!) } : {}),
      })
    )[0]!;
  }

  /** The codec of one request: the configured one, or a high-ratio one above `compressAbove`. */
  private compressionOf(request: readonly OutgoingRecord[], compressAbove: number | undefined): number {
    if (compressAbove === undefined || requestBytes(request) <= compressAbove) return this.compression;
    return oversizeCompression(this.compression);
  }

  async writeMany(
    batches: PartitionBatch[],
    options: { compressAbove?: number; beforeCommit?: (offsets: number[][]) => Promise<void> } = {},
  ): Promise<number[][]> {
    if (this.broken)
      throw new KafkaError('KAFKA_REQUEST_FAILED', `writer ${this.id} failed before; open a new one`);
    const transaction = await this.producer.transaction().catch((error) => {
      this.broken = true;
      throw toKdrError(error, `beginning a transaction as ${this.id}`);
    });
    const where = batches.map((b) => `${b.target.topic}-${b.target.partition}`).join(', ');
    // The request being sent, to name its record if the broker refuses it for its size.
    let sending: { target: TopicPartition; request: OutgoingRecord[]; compression: number } | undefined;
    try {
      const all: number[][] = [];
      for (const { target, requests } of batches) {
        const offsets: number[] = [];
        for (const request of requests) {
          const compression = this.compressionOf(request, options.compressAbove);
          sending = { target, request, compression };
          const [metadata] = await transaction.send({
            topic: target.topic,
            acks: -1,
            compression,
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
      sending = undefined;
      try {
        await options.beforeCommit?.(all);
      } catch (error) {
        // Nothing of this transaction may become visible: the caller could not record it.
        this.broken = true;
        await transaction.abort().catch(() => {});
        throw error;
      }
      await transaction.commit();
      return all;
    } catch (error) {
      if (this.broken && !sending && isKdrError(error)) throw error;
      // Whatever happened, this producer is done: the next attempt opens a new one, which fences this one
      // and settles the transaction (committed if the commit reached the coordinator, aborted otherwise).
      this.broken = true;
      await transaction.abort().catch(() => {});
      const doing = `writing ${where} as ${this.id}`;
      const details = batches.length === 1 ? { ...batches[0]!.target } : { partitions: where };
      // MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE: the same request fails the same way every time.
      if (sending && isTooLarge(error)) {
        const limit = await this.limitOf(sending.target.topic).catch(() => undefined);
        throw recordTooLargeError({ ...sending, limit, cause: error, writer: this.id });
      }
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

/**
 * Connections shared by transactional producers. kafkajs gives each producer a cluster of its own: a
 * connection to a seed broker and one to each broker it talks to, their request timers and metadata, which
 * at 1,000 partitions came to about 0.8 MB of memory and most of the mirror's CPU (garbage collection,
 * request-queue timers). A producer's transactional id, producer id, epoch and sequence numbers live in
 * the producer, not in its connections, so producers can share them: fencing is unchanged.
 *
 * Producers share only with producers of the same key (the topic they write): a cluster's metadata
 * covers every topic its producers ever wrote, and kafkajs fails a whole refresh when one of them is gone,
 * so a standby topic deleted under a cluster shared across topics would stop the writers of all of them.
 * A broker answers one connection's requests one at a time (an acks=all produce or a commit holds the
 * connection until it is replicated), so a key gets another cluster each 16 producers, up to `perKey`,
 * a new producer going to the least used. A cluster is closed when its last producer disconnects.
 */
export class SharedProducerClusters implements TransactionalProducers {
  private readonly byKey = new Map<string, SharedCluster[]>();
  private shared?: { logger: unknown; retry: object };

  constructor(
    private readonly kafka: Kafka,
    private readonly perKey: number,
  ) {}

  /** A transactional producer sending through a cluster shared with producers of the same key. */
  producer(options: {
    transactionalId: string;
    transactionTimeout: number;
    retry: object;
    shareKey?: string;
  }): Producer {
    const member = this.member(options.shareKey ?? `id:${options.transactionalId}`);
    return createProducer({
      cluster: member.view(),
      logger: this.shared!.logger,
      retry: { ...this.shared!.retry, ...options.retry },
      // kafkajs makes every transactional send idempotent (as kafka.producer({ idempotent: false }) did).
      idempotent: false,
      transactionalId: options.transactionalId,
      transactionTimeout: options.transactionTimeout,
    });
  }

  private member(key: string): SharedCluster {
    const members = this.byKey.get(key) ?? [];
    this.byKey.set(key, members);
    // A new cluster only when those of the key are busy: topics of a few partitions share one.
    const room = members.some((m) => m.producers < PRODUCERS_PER_CLUSTER);
    if (members.length < this.perKey && !room) {
      const { cluster, logger, retry } = createProducerCluster(this.kafka);
      this.shared ??= { logger, retry };
      const member = new SharedCluster(cluster, () => {
        const left = (this.byKey.get(key) ?? []).filter((m) => m !== member);
        if (left.length > 0) this.byKey.set(key, left);
        else this.byKey.delete(key);
      });
      members.push(member);
      return member;
    }
    // The least used, so that producers spread over the key's clusters as they open and close.
    return members.reduce((a, b) => (b.producers < a.producers ? b : a));
  }

  async close(): Promise<void> {
    const members = [...this.byKey.values()].flat();
    this.byKey.clear();
    await Promise.all(members.map((m) => m.close()));
  }
}

/**
 * One kafkajs cluster and the producers using it. Each producer sees it through a view: connecting joins
 * one shared connect, disconnecting only leaves (the last to leave closes the cluster). Everything else is
 * the cluster's own, called on the cluster itself (its methods keep state on `this`).
 */
class SharedCluster {
  private users = 0;

  /** Producers using the cluster now. */
  get producers(): number {
    return this.users;
  }

  private connecting?: Promise<void>;
  private closed = false;

  constructor(
    private readonly cluster: KafkajsCluster,
    private readonly onEmpty: () => void,
  ) {}

  view(): KafkajsCluster {
    this.users++;
    let left = false;
    const connect = () => {
      // A cluster closed under a producer (the pool closing) is not opened again behind the pool's back.
      if (this.closed)
        return Promise.reject(new KafkaError('KAFKA_REQUEST_FAILED', 'the writer pool is closed'));
      this.connecting ??= this.cluster.connect().finally(() => (this.connecting = undefined));
      return this.connecting;
    };
    const disconnect = async () => {
      if (left) return;
      left = true;
      if (--this.users === 0) await this.close();
    };
    const cluster = this.cluster;
    return new Proxy(cluster, {
      get(target, property) {
        if (property === 'connect') return connect;
        if (property === 'disconnect') return disconnect;
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onEmpty();
    await this.connecting?.catch(() => {});
    await this.cluster.disconnect().catch(() => {});
  }
}

/** Clusters per topic: enough connections that a broker works on several of its producers' requests at once. */
const SHARED_PRODUCER_CLUSTERS = 8;
/** Producers a cluster takes before its topic gets another (up to SHARED_PRODUCER_CLUSTERS). */
const PRODUCERS_PER_CLUSTER = 16;

/** Where the factory's transactional producers come from (shared clusters; a stand-in in unit tests). */
export interface TransactionalProducers {
  producer(options: {
    transactionalId: string;
    transactionTimeout: number;
    retry: object;
    /** Producers with the same key may share connections (the topic a mirror writer writes). */
    shareKey?: string;
  }): Producer;
  close(): Promise<void>;
}

export class KafkaTransactionalWriterFactory implements TransactionalWriterFactory {
  private readonly open_ = new Set<KafkaTransactionalWriter>();

  constructor(
    private readonly kafka: Kafka,
    private readonly pair: string,
    private readonly sourceAlias: string,
    private readonly compression: Compression,
    private readonly clusters: TransactionalProducers = new SharedProducerClusters(
      kafka,
      SHARED_PRODUCER_CLUSTERS,
    ),
  ) {}

  open(source: TopicPartition): Promise<TransactionalWriter> {
    // A partition's writer writes its topic's standby topic: it shares connections with that topic's writers.
    return this.openWithId(transactionalId(this.pair, this.sourceAlias, source), { ...source }, source.topic);
  }

  /** A writer of its own connections unless `shareKey` names writers it may share them with. */
  async openWithId(
    id: string,
    details: Record<string, unknown> = {},
    shareKey?: string,
  ): Promise<KafkaTransactionalWriter> {
    const producer = this.clusters.producer({
      transactionalId: id,
      ...(shareKey !== undefined ? { shareKey: `topic:${shareKey}` } : {}),
      transactionTimeout: 60_000,
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
    // Known once the fence's InitProducerId answered (kdr's kafkajs patch exposes it).
    const identity = (
      producer as Producer & { transactionalIdentity?: () => WriterToken | undefined }
    ).transactionalIdentity?.();
    const writer = new KafkaTransactionalWriter(
      producer,
      id,
      compressionType(this.compression),
      (topic) => this.maxMessageBytes(topic),
      identity,
    );
    this.open_.add(writer);
    const close = writer.close.bind(writer);
    writer.close = async () => {
      this.open_.delete(writer);
      await close();
    };
    return writer;
  }

  /** The standby topic's effective max.message.bytes, for the message of a refused record (rare path). */
  private async maxMessageBytes(topic: string): Promise<number | undefined> {
    const admin = new KafkaAdmin(this.kafka, 'standby');
    try {
      const timeout = new AbortController();
      const [state] = await Promise.race([
        admin.describeTopics([topic]).finally(() => timeout.abort()),
        sleep(10_000, [], { signal: timeout.signal }).catch(() => []),
      ]);
      const value = Number(state?.configs['max.message.bytes']?.value);
      return Number.isSafeInteger(value) ? value : undefined;
    } catch {
      return undefined;
    } finally {
      await admin.close().catch(() => {});
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.open_].map((w) => w.close()));
    await this.clusters.close();
  }
}
