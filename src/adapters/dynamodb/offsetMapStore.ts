import {
  type AttributeValue,
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  type QueryCommandInput,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import pLimit from 'p-limit';
import type { PartitionHead } from '../../core/generation.ts';
import { decodeRuns, encodeRuns, type OffsetMapEntry } from '../../core/offsetMap.ts';
import type { TopicPartition } from '../../core/records.ts';
import { ProducerFencedError, StoreError } from '../../errors.ts';
import type { WriterToken } from '../../ports/kafka.ts';
import type { GenerationPartition, OffsetMapStore } from '../../ports/offsetMapStore.ts';

/** Whether a transaction was cancelled by the condition of its item at `index`. */
function cancelledBy(error: unknown, index: number): boolean {
  return (
    error instanceof TransactionCanceledException &&
    error.CancellationReasons?.[index]?.Code === 'ConditionalCheckFailed'
  );
}

/** How long a head read from the table is trusted before it is read again (another process may move it). */
const HEAD_CACHE_MS = 5_000;

/** BatchGetItem's limit: at most 100 keys per request. */
const BATCH_GET_KEYS = 100;

/**
 * The offset map in DynamoDB: partition key p = "<pair>#<source alias>#<topic>#<partition>" (one map per
 * direction: failback mirrors the other way), sort key o = last source offset of the entry, and a
 * global secondary index on the last standby offset (ls) to translate positions back. Reads are strongly
 * consistent: a mirror recovering after a crash must see the entry it wrote just before.
 *
 * Generations (core/generation.ts): generation 1 keeps the key above, generation g > 1 appends "#g<g>", so
 * a re-created topic's entries never mix with the old topic's. The partition's head is one item under
 * "<key>#head" (sort key 0, no ls: it stays out of the index).
 */
export class DynamoDBOffsetMapStore implements OffsetMapStore {
  private readonly heads = new Map<string, { head: PartitionHead | undefined; until: number }>();

  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
    private readonly pair: string,
    private readonly sourceAlias: string,
    private readonly clock: () => number = Date.now,
  ) {}

  private base(tp: TopicPartition): string {
    return `${this.pair}#${this.sourceAlias}#${tp.topic}#${tp.partition}`;
  }

  private async key(tp: GenerationPartition): Promise<string> {
    const generation = tp.generation ?? (await this.head(tp, { cached: true }))?.generation ?? 1;
    return generation === 1 ? this.base(tp) : `${this.base(tp)}#g${generation}`;
  }

  async head(tp: TopicPartition, options: { cached?: boolean } = {}): Promise<PartitionHead | undefined> {
    if (options.cached) {
      const cached = this.heads.get(this.base(tp));
      if (cached && cached.until > this.clock()) return cached.head;
    }
    const result = await this.call('read the partition head', tp, () =>
      this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { p: { S: `${this.base(tp)}#head` }, o: { N: '0' } },
          ConsistentRead: true,
        }),
      ),
    );
    const head = result.Item?.h?.S ? (JSON.parse(result.Item.h.S) as PartitionHead) : undefined;
    this.heads.set(this.base(tp), { head, until: this.clock() + HEAD_CACHE_MS });
    return head;
  }

  async prefetchHeads(tps: TopicPartition[]): Promise<void> {
    // Heads cached for a while yet are not read again (a checkpoint's translation and observation both ask).
    const fresh = this.clock() + HEAD_CACHE_MS / 2;
    await this.readIntoCache(tps.filter((tp) => (this.heads.get(this.base(tp))?.until ?? 0) <= fresh));
  }

  async readHeads(tps: TopicPartition[]): Promise<(PartitionHead | undefined)[]> {
    // What the batch itself read: a head in the cache may come from a read sent before the caller asked.
    const read = await this.readIntoCache(tps);
    return tps.map((tp) => read.get(`${this.base(tp)}#head`));
  }

  /** Reads the heads of `wanted` (cached too); returns what was read, by head key. */
  private async readIntoCache(wanted: TopicPartition[]): Promise<Map<string, PartitionHead | undefined>> {
    const byKey = new Map(wanted.map((tp) => [`${this.base(tp)}#head`, tp]));
    const keys = [...byKey.keys()];
    const limit = pLimit(4);
    const chunks: string[][] = [];
    for (let i = 0; i < keys.length; i += BATCH_GET_KEYS) chunks.push(keys.slice(i, i + BATCH_GET_KEYS));
    const read = new Map<string, PartitionHead | undefined>();
    await Promise.all(chunks.map((chunk) => limit(() => this.readHeadBatch(chunk, byKey, read))));
    return read;
  }

  /** One BatchGetItem of up to 100 heads into the cache; a head not found is cached as none. */
  private async readHeadBatch(
    chunk: string[],
    byKey: Map<string, TopicPartition>,
    read: Map<string, PartitionHead | undefined>,
  ): Promise<void> {
    const found = new Map<string, PartitionHead>();
    const asked = this.clock();
    let keys: Record<string, AttributeValue>[] = chunk.map((k) => ({ p: { S: k }, o: { N: '0' } }));
    // DynamoDB may answer part of a batch (throttling, 16 MB): the rest is asked again, a few times.
    for (let attempt = 0; keys.length > 0; attempt++) {
      const tp = byKey.get(keys[0]!.p!.S!)!;
      if (attempt >= 5)
        throw new StoreError(
          'STORE_UNAVAILABLE',
          `could not read ${keys.length} partition heads in ${this.table}: still unprocessed after ${attempt} tries`,
          { details: { table: this.table, topic: tp.topic, partition: tp.partition } },
        );
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
      const result = await this.call('read the partition heads', tp, () =>
        this.client.send(
          new BatchGetItemCommand({ RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } } }),
        ),
      );
      for (const item of result.Responses?.[this.table] ?? [])
        if (item.h?.S) found.set(item.p!.S!, JSON.parse(item.h.S) as PartitionHead);
      keys = (result.UnprocessedKeys?.[this.table]?.Keys ?? []) as Record<string, AttributeValue>[];
    }
    const until = this.clock() + HEAD_CACHE_MS;
    for (const key of chunk) {
      read.set(key, found.get(key));
      const base = key.slice(0, -'#head'.length);
      // A head this store wrote or read while the batch was out is at least as new: it stays.
      if ((this.heads.get(base)?.until ?? 0) >= asked + HEAD_CACHE_MS) continue;
      this.heads.set(base, { head: found.get(key), until });
    }
  }

  /** The head as a conditional put: a partition never moves back to an older generation. */
  private headPut(tp: TopicPartition, head: PartitionHead) {
    return {
      TableName: this.table,
      Item: {
        p: { S: `${this.base(tp)}#head` },
        o: { N: '0' },
        g: { N: String(head.generation) },
        h: { S: JSON.stringify(head) },
      },
      ConditionExpression: 'attribute_not_exists(g) OR g <= :g',
      ExpressionAttributeValues: { ':g': { N: String(head.generation) } },
    };
  }

  async putHead(tp: TopicPartition, head: PartitionHead): Promise<void> {
    try {
      await this.client.send(new PutItemCommand(this.headPut(tp, head)));
    } catch (error) {
      throw this.headError(tp, head, error);
    }
    this.heads.set(this.base(tp), { head, until: this.clock() + HEAD_CACHE_MS });
  }

  private headError(tp: TopicPartition, head: PartitionHead, error: unknown): StoreError {
    this.heads.delete(this.base(tp));
    const newer =
      error instanceof ConditionalCheckFailedException ||
      (error instanceof TransactionCanceledException &&
        (error.CancellationReasons ?? []).some((r) => r.Code === 'ConditionalCheckFailed'));
    return new StoreError(
      newer ? 'STATE_CONFLICT' : 'STORE_UNAVAILABLE',
      newer
        ? `${tp.topic}-${tp.partition} is already past generation ${head.generation} in ${this.table}`
        : `could not write the partition head of ${tp.topic}-${tp.partition} in ${this.table}`,
      { cause: error, details: { table: this.table, topic: tp.topic, partition: tp.partition } },
    );
  }

  async put(
    entry: OffsetMapEntry,
    options: { generation?: number; head?: PartitionHead; token?: WriterToken } = {},
  ): Promise<void> {
    const { generation, head, token } = options;
    const p = await this.key({ ...entry, ...(generation ? { generation } : {}) });
    const item = {
      TableName: this.table,
      Item: {
        p: { S: p },
        o: { N: String(entry.lastSource) },
        ls: { N: String(entry.lastStandby) },
        r: { S: encodeRuns(entry.runs) },
        ts: { N: String(entry.lastTimestamp) },
        at: { N: String(entry.mirroredAt) },
      },
    };
    if (!head && !token) {
      await this.call('write the offset map entry', entry, () => this.client.send(new PutItemCommand(item)));
      return;
    }
    const items: TransactWriteItem[] = [{ Put: item }];
    if (head) items.push({ Put: this.headPut(entry, head) });
    if (token) items.push({ Put: this.writerPut(entry, token) });
    try {
      await this.client.send(new TransactWriteItemsCommand({ TransactItems: items }));
    } catch (error) {
      if (token && cancelledBy(error, items.length - 1)) {
        throw new ProducerFencedError(
          `a newer writer of ${entry.topic}-${entry.partition} wrote the offset map (this writer is ${token.producerId}/${token.producerEpoch}): fenced`,
          { cause: error, details: { topic: entry.topic, partition: entry.partition } },
        );
      }
      throw head
        ? this.headError(entry, head, error)
        : new StoreError(
            'STORE_UNAVAILABLE',
            `could not write the offset map entry of ${entry.topic}-${entry.partition} in ${this.table}`,
            { cause: error, details: { table: this.table, topic: entry.topic, partition: entry.partition } },
          );
    }
    if (head) this.heads.set(this.base(entry), { head, until: this.clock() + HEAD_CACHE_MS });
  }

  /**
   * The writer item: the newest token that wrote the partition. A write under an older token fails, so a
   * fenced writer (a zombie process, a frozen Lambda container thawing) can never record an entry after
   * the writer that fenced it began writing. A producer id changes only when Kafka starts the
   * transactional id over (epoch 0): then any other id is older.
   */
  private writerPut(tp: TopicPartition, token: WriterToken) {
    return {
      TableName: this.table,
      Item: {
        p: { S: `${this.base(tp)}#writer` },
        o: { N: '0' },
        pid: { N: String(token.producerId) },
        ep: { N: String(token.producerEpoch) },
      },
      ConditionExpression:
        token.producerEpoch === 0
          ? 'attribute_not_exists(pid) OR pid <> :pid OR ep <= :ep'
          : 'attribute_not_exists(pid) OR (pid = :pid AND ep <= :ep)',
      ExpressionAttributeValues: {
        ':pid': { N: String(token.producerId) },
        ':ep': { N: String(token.producerEpoch) },
      },
    };
  }

  async remove(tp: GenerationPartition, lastSource: number): Promise<void> {
    const p = await this.key(tp);
    await this.call('delete the offset map entry', tp, () =>
      this.client.send(
        new DeleteItemCommand({ TableName: this.table, Key: { p: { S: p }, o: { N: String(lastSource) } } }),
      ),
    );
  }

  latest(tp: GenerationPartition): Promise<OffsetMapEntry | undefined> {
    return this.queryOne(tp, { ScanIndexForward: false, KeyConditionExpression: 'p = :p' }, {});
  }

  covering(tp: GenerationPartition, sourceOffset: number): Promise<OffsetMapEntry | undefined> {
    return this.queryOne(
      tp,
      { ScanIndexForward: true, KeyConditionExpression: 'p = :p AND o >= :o' },
      { ':o': { N: String(sourceOffset) } },
    );
  }

  async coveringRange(tp: GenerationPartition, from: number, to: number): Promise<OffsetMapEntry[]> {
    const p = await this.key(tp);
    const entries: OffsetMapEntry[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.call('read the offset map', tp, () =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: 'p = :p AND o >= :o',
            ExpressionAttributeValues: { ':p': { S: p }, ':o': { N: String(from) } },
            ScanIndexForward: true,
            ConsistentRead: true,
            Limit: 100,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        ),
      );
      for (const item of page.Items ?? []) entries.push(this.entryOf(tp, item));
      start = page.LastEvaluatedKey;
    } while (start && (entries.at(-1)?.lastSource ?? -1) < to);
    return entries;
  }

  /** Eventually consistent (a global index): used on entries written long before, by failback. */
  coveringStandby(tp: GenerationPartition, standbyOffset: number): Promise<OffsetMapEntry | undefined> {
    return this.queryOne(
      tp,
      { ScanIndexForward: true, KeyConditionExpression: 'p = :p AND ls >= :s', IndexName: 'byStandbyOffset' },
      { ':s': { N: String(standbyOffset) } },
    );
  }

  private async queryOne(
    tp: GenerationPartition,
    input: Pick<QueryCommandInput, 'ScanIndexForward' | 'KeyConditionExpression' | 'IndexName'>,
    values: Record<string, AttributeValue>,
  ): Promise<OffsetMapEntry | undefined> {
    const p = await this.key(tp);
    const result = await this.call('read the offset map', tp, () =>
      this.client.send(
        new QueryCommand({
          TableName: this.table,
          ...input,
          ExpressionAttributeValues: { ':p': { S: p }, ...values },
          Limit: 1,
          ConsistentRead: input.IndexName === undefined,
        }),
      ),
    );
    const item = result.Items?.[0];
    return item ? this.entryOf(tp, item) : undefined;
  }

  private entryOf(tp: TopicPartition, item: Record<string, AttributeValue>): OffsetMapEntry {
    return {
      topic: tp.topic,
      partition: tp.partition,
      lastSource: Number(item.o!.N),
      lastStandby: Number(item.ls!.N),
      runs: decodeRuns(item.r!.S!),
      lastTimestamp: Number(item.ts!.N),
      mirroredAt: Number(item.at!.N),
    };
  }

  private async call<T>(what: string, tp: TopicPartition, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw new StoreError(
        'STORE_UNAVAILABLE',
        `could not ${what} of ${tp.topic}-${tp.partition} in ${this.table}`,
        {
          cause: error,
          details: { table: this.table, topic: tp.topic, partition: tp.partition },
        },
      );
    }
  }
}
