import { randomBytes } from 'node:crypto';
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
import { chunkSuffix, fromChunks, toChunks } from '../../core/chunks.ts';
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
 *   pk "pair#<pair>#checkpoints"  sk "summary" | "set|<version>|<chunk, 5 digits>"
 * A value too big for an item (an operation's group moves, a checkpoint set) is chunked (core/chunks.ts)
 * under a version the item naming it is written after. Checkpoints written before sets, one item per
 * row ("group|<group>|<topic>|<partition>", "end|<topic>|<partition>"), are still read, and deleted by
 * the first set written after them.
 */
/** Operation values up to this size stay one item, as JSON (an item holds 400 KB with its keys). */
const INLINE_BYTES = 300_000;

/** A unique, time-ordered version for a chunked value. */
const versionId = () => `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;

interface CheckpointSummary {
  at: number;
  groups: number;
  partitions: number;
  /** Absent in checkpoints written one item per row. */
  version?: string;
  chunks?: number;
  previous?: { version: string; chunks: number };
}

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

  /**
   * Small values are one item, as JSON. A value over INLINE_BYTES (a failover's group moves at 40,000
   * group-partitions are megabytes; an item holds 400 KB) goes gzipped in chunk items written first, then
   * the item that names how many there are: a reader never sees a value half written.
   */
  async putOperationData(id: string, key: string, value: unknown): Promise<void> {
    const sk = `op#${id}#${key}`;
    const json = JSON.stringify(value);
    let item: Record<string, AttributeValue>;
    // A value written in chunks before: its chunks go once the new item no longer names them.
    const replaced = await this.chunkedVersion(this.pk, sk);
    if (Buffer.byteLength(json, 'utf8') <= INLINE_BYTES) item = { data: { S: json } };
    else {
      const version = versionId();
      const chunks = toChunks(value);
      await this.batchWrite(
        chunks.map((chunk, i) => this.chunkPut(this.pk, `${sk}#part#${version}#${chunkSuffix(i)}`, chunk)),
        `save ${key} of operation ${id}`,
      );
      item = { version: { S: version }, chunks: { N: String(chunks.length) } };
    }
    await this.call(`save ${key} of operation ${id}`, () =>
      this.client.send(
        new PutItemCommand({ TableName: this.table, Item: { pk: { S: this.pk }, sk: { S: sk }, ...item } }),
      ),
    );
    if (replaced) await this.deleteChunks(this.pk, `${sk}#part#${replaced.version}#`, replaced.chunks);
  }

  async getOperationData<T>(id: string, key: string): Promise<T | undefined> {
    const sk = `op#${id}#${key}`;
    const result = await this.call(`read ${key} of operation ${id}`, () =>
      this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.pk }, sk: { S: sk } },
          ConsistentRead: true,
        }),
      ),
    );
    const item = result.Item;
    if (item?.data?.S) return JSON.parse(item.data.S) as T;
    if (!item?.version?.S) return undefined;
    return this.readChunks<T>(
      this.pk,
      `${sk}#part#${item.version.S}#`,
      Number(item.chunks!.N),
      `${key} of operation ${id}`,
    );
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

  /**
   * The whole set (every group-partition and every partition observation) as one chunked value under a
   * new version, then the summary that names it: a reader sees the previous set or this one, never a mix,
   * and 40,000 group-partitions take a few writes. The version before the previous one is deleted (the
   * previous stays for a reader that read its summary just before).
   */
  async putCheckpoints(set: {
    groups: GroupCheckpoint[];
    observations: PartitionObservation[];
    at: number;
  }): Promise<void> {
    const current = await this.checkpointSummary();
    const version = versionId();
    const chunks = toChunks({ groups: set.groups, observations: set.observations });
    await this.batchWrite(
      chunks.map((chunk, i) => this.chunkPut(this.checkpointsPk, `set|${version}|${chunkSuffix(i)}`, chunk)),
      'write checkpoints',
    );
    const summary: CheckpointSummary = {
      at: set.at,
      groups: set.groups.length,
      partitions: set.observations.length,
      version,
      chunks: chunks.length,
      ...(current?.version ? { previous: { version: current.version, chunks: current.chunks! } } : {}),
    };
    await this.call('write the checkpoint summary', () =>
      this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: { pk: { S: this.checkpointsPk }, sk: { S: 'summary' }, data: { S: JSON.stringify(summary) } },
        }),
      ),
    );
    if (current?.previous)
      await this.deleteChunks(
        this.checkpointsPk,
        `set|${current.previous.version}|`,
        current.previous.chunks,
      );
    // Checkpoints stored one item per row before: gone once a set replaces them.
    // Best effort, as for chunks: the set is written; rows left are never read again.
    if (current && !current.version) await this.deleteLegacyCheckpoints().catch(() => {});
  }

  async getCheckpoints(): Promise<CheckpointSet> {
    // A concurrent writer may delete the chunks of the summary read (two sets later): read it again.
    for (let attempt = 0; ; attempt++) {
      const summary = await this.checkpointSummary();
      if (!summary) return { groups: [], observations: [], at: null };
      if (!summary.version) return this.legacyCheckpoints();
      try {
        const set = await this.readChunks<Omit<CheckpointSet, 'at'>>(
          this.checkpointsPk,
          `set|${summary.version}|`,
          summary.chunks!,
          'checkpoints',
        );
        return { ...set, at: summary.at };
      } catch (error) {
        if (attempt >= 2) throw error;
      }
    }
  }

  private async checkpointSummary(): Promise<CheckpointSummary | undefined> {
    const result = await this.call('read the checkpoint summary', () =>
      this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: this.checkpointsPk }, sk: { S: 'summary' } },
          ConsistentRead: true,
        }),
      ),
    );
    return result.Item?.data?.S ? (JSON.parse(result.Item.data.S) as CheckpointSummary) : undefined;
  }

  /** Checkpoints as written before sets (one item per group-partition and per partition). */
  private async legacyCheckpoints(): Promise<CheckpointSet> {
    const set: CheckpointSet = { groups: [], observations: [], at: null };
    for await (const item of this.queryAll(this.checkpointsPk, '', 'read checkpoints')) {
      // A set's chunks under a summary without a version: a first set whose writer died before its
      // summary (or is writing it now). Not rows of this checkpoint.
      if (!item.data?.S) continue;
      const sk = item.sk!.S!;
      const data = JSON.parse(item.data!.S!);
      if (sk.startsWith('group|')) set.groups.push(data);
      else if (sk.startsWith('end|')) set.observations.push(data);
      else if (sk === 'summary') set.at = data.at;
    }
    return set;
  }

  private async deleteLegacyCheckpoints(): Promise<void> {
    const keys: string[] = [];
    for (const prefix of ['group|', 'end|'])
      for await (const item of this.queryAll(this.checkpointsPk, prefix, 'read checkpoints', true))
        keys.push(item.sk!.S!);
    await this.batchWrite(
      keys.map((sk) => ({ DeleteRequest: { Key: { pk: { S: this.checkpointsPk }, sk: { S: sk } } } })),
      'delete old checkpoints',
    );
  }

  private chunkPut(pk: string, sk: string, chunk: Buffer): WriteRequest {
    return { PutRequest: { Item: { pk: { S: pk }, sk: { S: sk }, chunk: { B: chunk } } } };
  }

  private async readChunks<T>(pk: string, prefix: string, expected: number, what: string): Promise<T> {
    const chunks: Uint8Array[] = [];
    for await (const item of this.queryAll(pk, prefix, `read ${what}`)) chunks.push(item.chunk!.B!);
    try {
      return fromChunks<T>(chunks, expected);
    } catch (error) {
      throw new StoreError(
        'STORE_UNAVAILABLE',
        `could not read ${what} of pair ${this.pair} in ${this.table}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /** The version and chunk count of a chunked operation value (undefined: none, or stored inline). */
  private async chunkedVersion(
    pk: string,
    sk: string,
  ): Promise<{ version: string; chunks: number } | undefined> {
    const result = await this.call('read an operation value', () =>
      this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: pk }, sk: { S: sk } },
          ConsistentRead: true,
        }),
      ),
    );
    const item = result.Item;
    return item?.version?.S ? { version: item.version.S, chunks: Number(item.chunks!.N) } : undefined;
  }

  /** Best effort: a chunk left behind takes space, never a reader's place. */
  private async deleteChunks(pk: string, prefix: string, count: number): Promise<void> {
    await this.batchWrite(
      Array.from({ length: count }, (_, i) => ({
        DeleteRequest: { Key: { pk: { S: pk }, sk: { S: `${prefix}${chunkSuffix(i)}` } } },
      })),
      'delete replaced chunks',
    ).catch(() => {});
  }

  private async *queryAll(
    pk: string,
    prefix: string,
    what: string,
    keysOnly = false,
  ): AsyncGenerator<Record<string, AttributeValue>> {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.call(what, () =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: prefix ? 'pk = :pk AND begins_with(sk, :prefix)' : 'pk = :pk',
            ExpressionAttributeValues: { ':pk': { S: pk }, ...(prefix ? { ':prefix': { S: prefix } } : {}) },
            ConsistentRead: true,
            ...(keysOnly ? { ProjectionExpression: 'sk' } : {}),
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        ),
      );
      yield* page.Items ?? [];
      start = page.LastEvaluatedKey;
    } while (start);
  }

  /** BatchWriteItem in requests of 25, unprocessed items retried with backoff. */
  private async batchWrite(requests: WriteRequest[], what: string): Promise<void> {
    for (let i = 0; i < requests.length; i += 25) {
      let pending = requests.slice(i, i + 25);
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 8)
          throw new StoreError(
            'STORE_UNAVAILABLE',
            `could not ${what}: DynamoDB left ${pending.length} writes unprocessed`,
          );
        const result = await this.call(what, () =>
          this.client.send(new BatchWriteItemCommand({ RequestItems: { [this.table]: pending } })),
        );
        pending = result.UnprocessedItems?.[this.table] ?? [];
        if (pending.length > 0) await sleep(50 * 2 ** attempt);
      }
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
