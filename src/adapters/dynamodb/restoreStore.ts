import { gunzipSync, gzipSync } from 'node:zlib';
import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { StateError, StoreError } from '../../errors.ts';
import type { RestoreStore } from '../../ports/restoreStore.ts';

/**
 *   pk "pair#<pair>#restores"  sk "<restoreId>"   generation (N), phase (S), progress (B, gzip JSON)
 *
 * The progress of a big restore (landings of every group position on every target partition) is kept
 * compressed: DynamoDB items stop at 400 KB.
 */
export class DynamoDBRestoreStore<P extends { restoreId: string; generation: number; phase: string }>
  implements RestoreStore<P>
{
  private readonly pk: string;

  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
    private readonly pair: string,
  ) {
    this.pk = `pair#${pair}#restores`;
  }

  async get(restoreId: string): Promise<P | undefined> {
    const result = await this.call(`read restore ${restoreId}`, () =>
      this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.pk }, sk: { S: restoreId } },
          ConsistentRead: true,
        }),
      ),
    );
    const body = result.Item?.progress?.B;
    if (!body) return undefined;
    return JSON.parse(gunzipSync(body).toString('utf8')) as P;
  }

  async create(progress: P): Promise<void> {
    await this.put(progress, 'attribute_not_exists(pk)', {}, `restore ${progress.restoreId} exists already`);
  }

  async claim(restoreId: string): Promise<P> {
    const current = await this.get(restoreId);
    if (!current) throw new StateError('STATE_CONFLICT', `restore ${restoreId} does not exist`);
    const next = { ...current, generation: current.generation + 1 };
    await this.put(
      next,
      'generation = :previous',
      { ':previous': { N: String(current.generation) } },
      `restore ${restoreId} was taken over by another process while this one claimed it`,
    );
    return next;
  }

  async save(progress: P): Promise<void> {
    await this.put(
      progress,
      'generation = :mine',
      { ':mine': { N: String(progress.generation) } },
      `restore ${progress.restoreId} was taken over by another process (generation ${progress.generation} is not the newest); this one stops`,
    );
  }

  private async put(
    progress: P,
    condition: string,
    values: Record<string, { N: string }>,
    conflict: string,
  ): Promise<void> {
    const body = gzipSync(JSON.stringify(progress));
    if (body.length > 380_000)
      throw new StoreError(
        'STORE_UNAVAILABLE',
        `the progress of restore ${progress.restoreId} is ${body.length} bytes compressed, more than a DynamoDB item holds (400 KB)`,
      );
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: {
            pk: { S: this.pk },
            sk: { S: progress.restoreId },
            generation: { N: String(progress.generation) },
            phase: { S: progress.phase },
            updatedAt: { N: String(Date.now()) },
            progress: { B: body },
          },
          ConditionExpression: condition,
          ...(Object.keys(values).length > 0 ? { ExpressionAttributeValues: values } : {}),
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException)
        throw new StateError('STATE_CONFLICT', conflict, { cause: error });
      throw new StoreError(
        'STORE_UNAVAILABLE',
        `could not save restore ${progress.restoreId} of pair ${this.pair} in ${this.table}`,
        {
          cause: error,
        },
      );
    }
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw new StoreError('STORE_UNAVAILABLE', `could not ${what} of pair ${this.pair} in ${this.table}`, {
        cause: error,
      });
    }
  }
}
