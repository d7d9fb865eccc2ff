import {
  type AttributeValue,
  type DynamoDBClient,
  PutItemCommand,
  QueryCommand,
  type QueryCommandInput,
} from '@aws-sdk/client-dynamodb';
import { decodeRuns, encodeRuns, type OffsetMapEntry } from '../../core/offsetMap.ts';
import type { TopicPartition } from '../../core/records.ts';
import { StoreError } from '../../errors.ts';
import type { OffsetMapStore } from '../../ports/offsetMapStore.ts';

/**
 * The offset map in DynamoDB: partition key p = "<pair>#<source alias>#<topic>#<partition>" (one map per
 * direction: failback mirrors the other way), sort key o = last source offset of the entry, and a
 * global secondary index on the last standby offset (ls) to translate positions back. Reads are strongly consistent: a mirror recovering after a crash must see the
 * entry it wrote just before.
 */
export class DynamoDBOffsetMapStore implements OffsetMapStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
    private readonly pair: string,
    private readonly sourceAlias: string,
  ) {}

  private key(tp: TopicPartition): string {
    return `${this.pair}#${this.sourceAlias}#${tp.topic}#${tp.partition}`;
  }

  async put(entry: OffsetMapEntry): Promise<void> {
    await this.call('write the offset map entry', entry, () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: {
            p: { S: this.key(entry) },
            o: { N: String(entry.lastSource) },
            ls: { N: String(entry.lastStandby) },
            r: { S: encodeRuns(entry.runs) },
            ts: { N: String(entry.lastTimestamp) },
            at: { N: String(entry.mirroredAt) },
          },
        }),
      ),
    );
  }

  latest(tp: TopicPartition): Promise<OffsetMapEntry | undefined> {
    return this.queryOne(tp, { ScanIndexForward: false, KeyConditionExpression: 'p = :p' }, {});
  }

  covering(tp: TopicPartition, sourceOffset: number): Promise<OffsetMapEntry | undefined> {
    return this.queryOne(
      tp,
      { ScanIndexForward: true, KeyConditionExpression: 'p = :p AND o >= :o' },
      { ':o': { N: String(sourceOffset) } },
    );
  }

  async coveringRange(tp: TopicPartition, from: number, to: number): Promise<OffsetMapEntry[]> {
    const entries: OffsetMapEntry[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.call('read the offset map', tp, () =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: 'p = :p AND o >= :o',
            ExpressionAttributeValues: { ':p': { S: this.key(tp) }, ':o': { N: String(from) } },
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
  coveringStandby(tp: TopicPartition, standbyOffset: number): Promise<OffsetMapEntry | undefined> {
    return this.queryOne(
      tp,
      { ScanIndexForward: true, KeyConditionExpression: 'p = :p AND ls >= :s', IndexName: 'byStandbyOffset' },
      { ':s': { N: String(standbyOffset) } },
    );
  }

  private async queryOne(
    tp: TopicPartition,
    input: Pick<QueryCommandInput, 'ScanIndexForward' | 'KeyConditionExpression' | 'IndexName'>,
    values: Record<string, AttributeValue>,
  ): Promise<OffsetMapEntry | undefined> {
    const result = await this.call('read the offset map', tp, () =>
      this.client.send(
        new QueryCommand({
          TableName: this.table,
          ...input,
          ExpressionAttributeValues: { ':p': { S: this.key(tp) }, ...values },
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
