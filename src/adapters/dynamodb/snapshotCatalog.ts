import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
} from '@aws-sdk/client-dynamodb';
import { StateError, StoreError } from '../../errors.ts';
import type { SnapshotCatalog, SnapshotIndexEntry } from '../../ports/snapshotCatalog.ts';

/**
 *   pk "pair#<pair>#snapshots"       sk "<cluster>#<snapshotId>"   the index, for listing
 *   pk "pair#<pair>#snapshot-lease"  sk "<cluster>"                 one snapshot runner per cluster
 */
export class DynamoDBSnapshotCatalog implements SnapshotCatalog {
  private readonly indexPk: string;
  private readonly leasePk: string;

  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
    pair: string,
  ) {
    this.indexPk = `pair#${pair}#snapshots`;
    this.leasePk = `pair#${pair}#snapshot-lease`;
  }

  async acquireLease(cluster: string, owner: string, ttlMs: number): Promise<void> {
    const now = Date.now();
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: {
            pk: { S: this.leasePk },
            sk: { S: cluster },
            owner: { S: owner },
            expiresAt: { N: String(now + ttlMs) },
          },
          ConditionExpression: 'attribute_not_exists(pk) OR expiresAt < :now OR #owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':now': { N: String(now) }, ':owner': { S: owner } },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        const held = await this.client
          .send(
            new GetItemCommand({
              TableName: this.table,
              Key: { pk: { S: this.leasePk }, sk: { S: cluster } },
              ConsistentRead: true,
            }),
          )
          .catch(() => undefined);
        const holder = held?.Item?.owner?.S ?? 'another process';
        const until = held?.Item?.expiresAt?.N
          ? new Date(Number(held.Item.expiresAt.N)).toISOString()
          : 'unknown';
        throw new StateError(
          'STATE_CONFLICT',
          `a snapshot of ${cluster} is already running (held by ${holder} until ${until})`,
          { cause: error },
        );
      }
      throw new StoreError('STORE_UNAVAILABLE', `could not take the snapshot lease of ${cluster}`, {
        cause: error,
      });
    }
  }

  async releaseLease(cluster: string, owner: string): Promise<void> {
    await this.client
      .send(
        new DeleteItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.leasePk }, sk: { S: cluster } },
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: { ':owner': { S: owner } },
        }),
      )
      .catch((error) => {
        if (!(error instanceof ConditionalCheckFailedException))
          throw new StoreError('STORE_UNAVAILABLE', 'could not release the snapshot lease', { cause: error });
      });
  }

  async index(entry: SnapshotIndexEntry): Promise<void> {
    await this.call('index the snapshot', () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: {
            pk: { S: this.indexPk },
            sk: { S: `${entry.cluster}#${entry.snapshotId}` },
            data: { S: JSON.stringify(entry) },
          },
        }),
      ),
    );
  }

  async list(cluster?: string): Promise<SnapshotIndexEntry[]> {
    const entries: SnapshotIndexEntry[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.call('list snapshots', () =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: cluster ? 'pk = :pk AND begins_with(sk, :c)' : 'pk = :pk',
            ExpressionAttributeValues: {
              ':pk': { S: this.indexPk },
              ...(cluster ? { ':c': { S: `${cluster}#` } } : {}),
            },
            ConsistentRead: true,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        ),
      );
      for (const item of page.Items ?? []) entries.push(JSON.parse(item.data!.S!));
      start = page.LastEvaluatedKey;
    } while (start);
    return entries.sort((a, b) => a.cutAt.localeCompare(b.cutAt) || a.snapshotId.localeCompare(b.snapshotId));
  }

  async remove(cluster: string, snapshotId: string): Promise<void> {
    await this.call('remove the snapshot from the index', () =>
      this.client.send(
        new DeleteItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.indexPk }, sk: { S: `${cluster}#${snapshotId}` } },
        }),
      ),
    );
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw new StoreError('STORE_UNAVAILABLE', `could not ${what} in ${this.table}`, { cause: error });
    }
  }
}
