import {
  BatchWriteItemCommand,
  type DynamoDBClient,
  PutItemCommand,
  QueryCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, describe, expect, it } from 'vitest';
import { createAwsClients, destroyAwsClients } from '../../src/adapters/aws/clients.ts';
import { DynamoDBStateStore } from '../../src/adapters/dynamodb/stateStore.ts';
import { loadConfig } from '../../src/config.ts';
import type { GroupCheckpoint, PartitionObservation } from '../../src/ports/stateStore.ts';
import { uniqueName } from '../helpers/lab.ts';

/**
 * The state table at scale, against moto (which refuses items over 400 KB as DynamoDB does): a failover's
 * group moves at 40,000 group-partitions are megabytes, and a checkpoint of as many rows was 1,600
 * BatchWriteItem requests in a row, every minute.
 */

const config = loadConfig();
const clients = createAwsClients(config);
afterAll(() => destroyAwsClients(clients));

/** Counts the commands a client sends, by name. */
function counted(client: DynamoDBClient): Map<string, number> {
  const counts = new Map<string, number>();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      counts.set(context.commandName!, (counts.get(context.commandName!) ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: `count-${uniqueName('c')}` },
  );
  return counts;
}

function checkpointSet(groups: number, partitions: number, at: number) {
  const rows: GroupCheckpoint[] = [];
  for (let g = 0; g < groups; g++)
    for (let p = 0; p < partitions; p++)
      rows.push({
        group: `group-${g}`,
        topic: `topic-${p % 10}`,
        partition: p,
        sourceOffset: g * 1000 + p,
        standbyOffset: g % 7 === 0 ? null : g * 1000 + p + 3,
        sourceTopicId: 'Aq3vI4uXQ4mG0K1d2Z9x8w',
        checkpointedAt: at,
      });
  const observations: PartitionObservation[] = Array.from({ length: partitions }, (_, p) => ({
    topic: `topic-${p % 10}`,
    partition: p,
    sourceTopicId: 'Aq3vI4uXQ4mG0K1d2Z9x8w',
    endOffset: 10_000 + p,
    lastMirrored: 9_999 + p,
    firstUnmirroredTimestamp: null,
    observedAt: at,
  }));
  return { groups: rows, observations, at };
}

const checkpointItems = async (pair: string) =>
  (
    await clients.dynamodb.send(
      new QueryCommand({
        TableName: config.stateTable,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: `pair#${pair}#checkpoints` } },
        ProjectionExpression: 'sk',
        ConsistentRead: true,
      }),
    )
  ).Items!.map((i) => i.sk!.S!);

describe('the state table at scale', () => {
  it('stores an operation value far over the 400 KB item limit and reads it back whole', async () => {
    const pair = uniqueName('chunks-op');
    const store = new DynamoDBStateStore(clients.dynamodb, config.stateTable, pair, 'primary');
    const moves = Object.fromEntries(
      Array.from({ length: 400 }, (_, g) => [
        `group-${g}`,
        Array.from({ length: 100 }, (_, p) => ({
          topic: `topic-${g % 10}`,
          partition: p,
          sourceOffset: g + p,
          standbyOffset: g + p + Math.floor(Math.random() * 1e6),
          exact: true,
        })),
      ]),
    );
    expect(JSON.stringify(moves).length).toBeGreaterThan(3_000_000);
    await store.putOperationData('op-1', 'plan', { moves });
    expect(await store.getOperationData('op-1', 'plan')).toEqual({ moves });
    // Written again (the flip phase re-saves the plan): the new value, and the old chunks are gone.
    const again = { moves, rpo: [{ topic: 't', partition: 0, records: 3 }] };
    await store.putOperationData('op-1', 'plan', again);
    expect(await store.getOperationData('op-1', 'plan')).toEqual(again);
    const parts = (
      await clients.dynamodb.send(
        new QueryCommand({
          TableName: config.stateTable,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :p)',
          ExpressionAttributeValues: { ':pk': { S: `pair#${pair}` }, ':p': { S: 'op#op-1#plan#part#' } },
          ProjectionExpression: 'sk',
          ConsistentRead: true,
        }),
      )
    ).Items!.map((i) => i.sk!.S!);
    expect(new Set(parts.map((sk) => sk.split('#')[4])).size).toBe(1);
    // A small value stays one item, and replaces a chunked one.
    await store.putOperationData('op-1', 'plan', { small: true });
    expect(await store.getOperationData('op-1', 'plan')).toEqual({ small: true });
  });

  it('writes 40,000 group-partitions in a few requests, and a reader sees one whole set', async () => {
    const pair = uniqueName('chunks-cp');
    const store = new DynamoDBStateStore(clients.dynamodb, config.stateTable, pair, 'primary');
    const first = checkpointSet(400, 100, 1_000);
    const counts = counted(clients.dynamodb);
    await store.putCheckpoints(first);
    // One item per row took 1,601 BatchWriteItem requests here.
    expect(counts.get('BatchWriteItemCommand') ?? 0).toBeLessThanOrEqual(2);
    expect(await store.getCheckpoints()).toEqual(first);

    const second = checkpointSet(400, 100, 2_000);
    await store.putCheckpoints(second);
    const third = checkpointSet(399, 100, 3_000);
    await store.putCheckpoints(third);
    const read = await store.getCheckpoints();
    expect(read.at).toBe(3_000);
    expect(read.groups).toHaveLength(39_900);
    expect(read).toEqual(third);
    // The first set's chunks are gone; the second stays for a reader that read its summary just before.
    const versions = new Set(
      (await checkpointItems(pair)).filter((sk) => sk.startsWith('set|')).map((sk) => sk.split('|')[1]),
    );
    expect(versions.size).toBe(2);
  });

  it('leaves the previous set readable when a write fails half way', async () => {
    const pair = uniqueName('chunks-fail');
    const store = new DynamoDBStateStore(clients.dynamodb, config.stateTable, pair, 'primary');
    const first = checkpointSet(10, 20, 1_000);
    await store.putCheckpoints(first);
    const failing = createAwsClients(config);
    failing.dynamodb.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'PutItemCommand') throw new Error('killed before the summary');
        return next(args);
      },
      { step: 'initialize', name: 'fail-summary' },
    );
    const broken = new DynamoDBStateStore(failing.dynamodb, config.stateTable, pair, 'primary');
    await expect(broken.putCheckpoints(checkpointSet(400, 100, 2_000))).rejects.toThrow(/summary/);
    destroyAwsClients(failing);
    expect(await store.getCheckpoints()).toEqual(first);
  });

  it('reads checkpoints stored one item per row, and replaces them with a set', async () => {
    const pair = uniqueName('chunks-legacy');
    const store = new DynamoDBStateStore(clients.dynamodb, config.stateTable, pair, 'primary');
    const old = checkpointSet(3, 4, 500);
    const pk = { S: `pair#${pair}#checkpoints` };
    // The layout before sets, as the earlier code wrote it.
    const rows = [
      ...old.groups.map((g) => ({ sk: `group|${g.group}|${g.topic}|${g.partition}`, data: g })),
      ...old.observations.map((o) => ({ sk: `end|${o.topic}|${o.partition}`, data: o })),
    ];
    for (let i = 0; i < rows.length; i += 25)
      await clients.dynamodb.send(
        new BatchWriteItemCommand({
          RequestItems: {
            [config.stateTable]: rows.slice(i, i + 25).map((r) => ({
              PutRequest: { Item: { pk, sk: { S: r.sk }, data: { S: JSON.stringify(r.data) } } },
            })),
          },
        }),
      );
    await clients.dynamodb.send(
      new PutItemCommand({
        TableName: config.stateTable,
        Item: {
          pk,
          sk: { S: 'summary' },
          data: { S: JSON.stringify({ at: 500, groups: 12, partitions: 4 }) },
        },
      }),
    );
    // A first set's chunks whose writer died before its summary: not rows of the old checkpoint.
    await clients.dynamodb.send(
      new PutItemCommand({
        TableName: config.stateTable,
        Item: { pk, sk: { S: 'set|died|00000' }, chunk: { B: Buffer.from('partial') } },
      }),
    );
    const read = await store.getCheckpoints();
    expect(read.at).toBe(500);
    expect(read.groups).toEqual(expect.arrayContaining(old.groups));
    expect(read.groups).toHaveLength(old.groups.length);
    expect(read.observations).toHaveLength(4);

    const next = checkpointSet(2, 4, 600);
    await store.putCheckpoints(next);
    expect(await store.getCheckpoints()).toEqual(next);
    expect(
      (await checkpointItems(pair)).filter((sk) => sk.startsWith('group|') || sk.startsWith('end|')),
    ).toEqual([]);
  });
});
