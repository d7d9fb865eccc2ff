import { DynamoDBClient, GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { loadConfig } from '../src/config.ts';

/**
 * What one DynamoDB call costs on the lab (moto): 1,000 latest-entry-shaped Queries and 1,000 GetItems
 * of keys that do not exist, 1, 16 and 32 in flight. The lab's failover and checkpoint make about one
 * such call per partition per phase, so this is their floor here (docs/BENCHMARKS.md, scale).
 * Run with the lab up: `node --import tsx bench/dynamoFloor.ts`.
 */

const config = loadConfig();
const client = new DynamoDBClient({
  region: config.aws.region,
  ...(config.aws.endpoint ? { endpoint: config.aws.endpoint } : {}),
  ...(config.aws.credentials ? { credentials: config.aws.credentials } : {}),
});
const query = (i: number) =>
  client.send(
    new QueryCommand({
      TableName: config.offsetTable,
      KeyConditionExpression: 'p = :p',
      ExpressionAttributeValues: { ':p': { S: `floor#t-${i % 10}#${i % 100}` } },
      ScanIndexForward: false,
      Limit: 1,
      ConsistentRead: true,
    }),
  );
const get = (i: number) =>
  client.send(
    new GetItemCommand({
      TableName: config.offsetTable,
      Key: { p: { S: `floor#${i}` }, o: { N: '0' } },
      ConsistentRead: true,
    }),
  );
for (const [name, call] of [
  ['Query', query],
  ['GetItem', get],
] as const)
  for (const inFlight of [1, 16, 32]) {
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < 1000) await call(next++);
      }),
    );
    console.log(`${name}: 1,000 calls, ${inFlight} in flight: ${Date.now() - started} ms`);
  }
client.destroy();
