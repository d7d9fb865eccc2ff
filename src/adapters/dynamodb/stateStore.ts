import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AttributeValue,
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import {
  type ControlState,
  describeConflict,
  initialControl,
  type PairState,
  type TransitionRecord,
} from '../../core/control.ts';
import type { Operation } from '../../core/operation.ts';
import { StateError, StoreError } from '../../errors.ts';
import type {
  CheckpointSet,
  GroupCheckpoint,
  PartitionObservation,
  StateStore,
} from '../../ports/stateStore.ts';

/**
 * The pair's control item, transition history and checkpoints in the state table:
 *   pk "pair#<pair>"              sk "control" | "history#<epoch, 10 digits>" | "op#<operation id>#<key>"
 * The control item carries the operation in progress as JSON and, to condition on, its id, owner and
 * lease as attributes of their own (opId, opOwner, opLease).
 *   pk "pair#<pair>#checkpoints"  sk "group|<group>|<topic>|<partition>" | "end|<topic>|<partition>" | "summary"
 */
export class DynamoDBStateStore implements StateStore {
  private readonly pk: string;
  private readonly checkpointsPk: string;

  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
    private readonly pair: string,
    private readonly primaryAlias: string,
  ) {
    this.pk = `pair#${pair}`;
    this.checkpointsPk = `pair#${pair}#checkpoints`;
  }

  async getControl(): Promise<ControlState> {
    const result = await this.call('read the control state', () =>
      this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.pk }, sk: { S: 'control' } },
          ConsistentRead: true,
        }),
      ),
    );
    const item = result.Item;
    if (!item) return initialControl(this.pair, this.primaryAlias);
    return {
      pair: this.pair,
      state: item.state!.S as PairState,
      activeCluster: item.active!.S!,
      epoch: Number(item.epoch!.N),
      updatedAt: Number(item.updatedAt!.N),
      ...(item.operation?.S ? { operation: normalizeOperation(JSON.parse(item.operation.S)) } : {}),
      ...(item.reason?.S ? { reason: item.reason.S } : {}),
    };
  }

  async transition(
    expectedEpoch: number,
    next: {
      state: PairState;
      activeCluster: string;
      operation?: Operation;
      owner: string;
      reason: string;
    },
    expectedOperation?: { id: string; owner: string },
  ): Promise<ControlState> {
    const current = await this.getControl();
    const now = Date.now();
    const epoch = expectedEpoch + 1;
    const control: ControlState = {
      pair: this.pair,
      state: next.state,
      activeCluster: next.activeCluster,
      epoch,
      updatedAt: now,
      ...(next.operation ? { operation: next.operation } : {}),
      reason: next.reason,
    };
    const history: TransitionRecord = {
      epoch,
      from: current.epoch === expectedEpoch ? current.state : ('?' as PairState),
      to: next.state,
      activeCluster: next.activeCluster,
      at: now,
      owner: next.owner,
      reason: next.reason,
    };
    const item: Record<string, AttributeValue> = {
      pk: { S: this.pk },
      sk: { S: 'control' },
      state: { S: control.state },
      active: { S: control.activeCluster },
      epoch: { N: String(epoch) },
      updatedAt: { N: String(now) },
      reason: { S: next.reason },
      ...(next.operation ? operationAttributes(next.operation) : {}),
    };
    try {
      await this.client.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.table,
                Item: item,
                // Epoch 0 is the implicit initial state: no item yet.
                ConditionExpression: expectedOperation
                  ? 'epoch = :e AND opId = :id AND opOwner = :owner'
                  : expectedEpoch === 0
                    ? 'attribute_not_exists(pk) OR epoch = :e'
                    : 'epoch = :e',
                ExpressionAttributeValues: {
                  ':e': { N: String(expectedEpoch) },
                  ...(expectedOperation
                    ? { ':id': { S: expectedOperation.id }, ':owner': { S: expectedOperation.owner } }
                    : {}),
                },
              },
            },
            {
              Put: {
                TableName: this.table,
                Item: {
                  pk: { S: this.pk },
                  sk: { S: `history#${String(epoch).padStart(10, '0')}` },
                  record: { S: JSON.stringify(history) },
                },
                ConditionExpression: 'attribute_not_exists(sk)',
              },
            },
          ],
        }),
      );
      return control;
    } catch (error) {
      if (error instanceof TransactionCanceledException) {
        const now = await this.getControl();
        throw new StateError('STATE_CONFLICT', describeConflict(now, next.state), {
          cause: error,
          details: { pair: this.pair, epoch: now.epoch, state: now.state, expectedEpoch },
        });
      }
      throw new StoreError('STORE_UNAVAILABLE', `could not change the control state of pair ${this.pair}`, {
        cause: error,
      });
    }
  }

  async updateOperation(
    expected: { epoch: number; id: string; owner: string; leaseUntil?: number },
    next: Operation,
  ): Promise<ControlState> {
    const values: Record<string, AttributeValue> = {
      ':e': { N: String(expected.epoch) },
      ':id': { S: expected.id },
      ':owner': { S: expected.owner },
    };
    let condition = 'epoch = :e AND opId = :id AND opOwner = :owner';
    // An operation written by kdr before operations had ids (a pair left FAILING_OVER by it) has none of
    // the attributes: it is taken over on the epoch alone.
    if (expected.id.startsWith('legacy-')) {
      condition = 'epoch = :e AND (attribute_not_exists(opId) OR (opId = :id AND opOwner = :owner))';
    } else if (expected.leaseUntil !== undefined) {
      condition += ' AND opLease = :lease';
      values[':lease'] = { N: String(expected.leaseUntil) };
    }
    const attributes = operationAttributes(next);
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.pk }, sk: { S: 'control' } },
          UpdateExpression: 'SET #op = :op, opId = :nid, opOwner = :nowner, opLease = :nlease',
          ConditionExpression: condition,
          ExpressionAttributeNames: { '#op': 'operation' },
          ExpressionAttributeValues: {
            ...values,
            ':op': attributes.operation,
            ':nid': attributes.opId,
            ':nowner': attributes.opOwner,
            ':nlease': attributes.opLease,
          },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        const now = await this.getControl();
        const op = now.operation;
        throw new StateError(
          'LEASE_LOST',
          `operation ${expected.id} of pair ${this.pair} is no longer owned by ${expected.owner}: the pair is ${now.state} (epoch ${now.epoch})` +
            (op ? `, operation ${op.id} phase ${op.phase} owned by ${op.owner}` : ', with no operation'),
          { cause: error, details: { pair: this.pair, epoch: now.epoch, state: now.state } },
        );
      }
      throw new StoreError(
        'STORE_UNAVAILABLE',
        `could not update operation ${expected.id} of pair ${this.pair}`,
        {
          cause: error,
        },
      );
    }
    return this.getControl();
  }

  async putOperationData(id: string, key: string, value: unknown): Promise<void> {
    await this.call(`save ${key} of operation ${id}`, () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: { pk: { S: this.pk }, sk: { S: `op#${id}#${key}` }, data: { S: JSON.stringify(value) } },
        }),
      ),
    );
  }

  async getOperationData<T>(id: string, key: string): Promise<T | undefined> {
    const result = await this.call(`read ${key} of operation ${id}`, () =>
      this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.pk }, sk: { S: `op#${id}#${key}` } },
          ConsistentRead: true,
        }),
      ),
    );
    return result.Item?.data?.S ? (JSON.parse(result.Item.data.S) as T) : undefined;
  }

  async history(limit = 50): Promise<TransitionRecord[]> {
    const result = await this.call('read the transition history', () =>
      this.client.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :h)',
          ExpressionAttributeValues: { ':pk': { S: this.pk }, ':h': { S: 'history#' } },
          ScanIndexForward: false,
          Limit: limit,
          ConsistentRead: true,
        }),
      ),
    );
    return (result.Items ?? []).map((i) => JSON.parse(i.record!.S!) as TransitionRecord).reverse();
  }

  async putCheckpoints(set: {
    groups: GroupCheckpoint[];
    observations: PartitionObservation[];
    at: number;
  }): Promise<void> {
    const requests: WriteRequest[] = [
      ...set.groups.map((g) => ({
        PutRequest: {
          Item: {
            pk: { S: this.checkpointsPk },
            sk: { S: `group|${g.group}|${g.topic}|${g.partition}` },
            data: { S: JSON.stringify(g) },
          },
        },
      })),
      ...set.observations.map((o) => ({
        PutRequest: {
          Item: {
            pk: { S: this.checkpointsPk },
            sk: { S: `end|${o.topic}|${o.partition}` },
            data: { S: JSON.stringify(o) },
          },
        },
      })),
    ];
    for (let i = 0; i < requests.length; i += 25) await this.batchWrite(requests.slice(i, i + 25));
    // Written last: the age of the newest complete checkpoint.
    await this.batchWrite([
      {
        PutRequest: {
          Item: {
            pk: { S: this.checkpointsPk },
            sk: { S: 'summary' },
            data: {
              S: JSON.stringify({
                at: set.at,
                groups: set.groups.length,
                partitions: set.observations.length,
              }),
            },
          },
        },
      },
    ]);
  }

  private async batchWrite(requests: WriteRequest[]): Promise<void> {
    let pending = requests;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 8)
        throw new StoreError(
          'STORE_UNAVAILABLE',
          `DynamoDB left ${pending.length} checkpoint writes unprocessed`,
        );
      const result = await this.call('write checkpoints', () =>
        this.client.send(new BatchWriteItemCommand({ RequestItems: { [this.table]: pending } })),
      );
      pending = result.UnprocessedItems?.[this.table] ?? [];
      if (pending.length > 0) await sleep(50 * 2 ** attempt);
    }
  }

  async getCheckpoints(): Promise<CheckpointSet> {
    const set: CheckpointSet = { groups: [], observations: [], at: null };
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.call('read checkpoints', () =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': { S: this.checkpointsPk } },
            ConsistentRead: true,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        ),
      );
      for (const item of page.Items ?? []) {
        const sk = item.sk!.S!;
        const data = JSON.parse(item.data!.S!);
        if (sk.startsWith('group|')) set.groups.push(data);
        else if (sk.startsWith('end|')) set.observations.push(data);
        else if (sk === 'summary') set.at = data.at;
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return set;
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

function operationAttributes(
  op: Operation,
): Record<'operation' | 'opId' | 'opOwner' | 'opLease', AttributeValue> {
  return {
    operation: { S: JSON.stringify(op) },
    opId: { S: op.id },
    opOwner: { S: op.owner },
    opLease: { N: String(op.leaseUntil) },
  };
}

/** An operation written before operations had ids and phases: resumable from its first phase. */
function normalizeOperation(
  raw: Partial<Operation> & Pick<Operation, 'kind' | 'startedAt' | 'owner'>,
): Operation {
  if (raw.id && raw.phase) return raw as Operation;
  return {
    timeoutMs: 60_000,
    leaseUntil: 0,
    ...raw,
    id: raw.id ?? `legacy-${raw.startedAt}`,
    phase: raw.phase ?? (raw.kind === 'failback' ? 'export' : raw.mode === 'unplanned' ? 'fence' : 'drain'),
  };
}
