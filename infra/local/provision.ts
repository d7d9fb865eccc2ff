import { readFileSync } from 'node:fs';
import {
  CreateTableCommand,
  type CreateTableCommandInput,
  ResourceInUseException,
} from '@aws-sdk/client-dynamodb';
import { BucketAlreadyOwnedByYou, CreateBucketCommand, PutBucketVersioningCommand } from '@aws-sdk/client-s3';
import YAML from 'yaml';
import { createAwsClients, destroyAwsClients } from '../../src/adapters/aws/clients.ts';
import type { KdrConfig } from '../../src/config.ts';

/**
 * Creates kdr's tables and bucket on the lab's moto from infra/aws/state.yml, the same CloudFormation
 * resources serverless.yml deploys. Only the names come from configuration.
 */

interface CfnResource {
  Type: string;
  Properties: Record<string, unknown>;
}

/** Logical resource id in state.yml → the configured name that replaces its `${self:custom...}`. */
export function resourceNames(config: Pick<KdrConfig, 'offsetTable' | 'stateTable' | 'bucket'>) {
  return { OffsetTable: config.offsetTable, StateTable: config.stateTable, SnapshotBucket: config.bucket };
}

// CloudFormation's short-form tags (!Sub, !Ref, ...) become plain objects: the lab never needs them.
const cfnTags = ['!Sub', '!Ref', '!GetAtt', '!Join', '!If', '!Equals', '!Not', '!Select', '!Split'].map(
  (tag) => ({
    tag,
    resolve: (value: unknown) => ({ [tag.slice(1)]: value }),
  }),
);

export function readStateResources(file: string): Record<string, CfnResource> {
  const doc = YAML.parse(readFileSync(file, 'utf8'), { customTags: cfnTags }) as {
    Resources: Record<string, CfnResource>;
  };
  return doc.Resources;
}

export function createTableInput(
  properties: Record<string, unknown>,
  tableName: string,
): CreateTableCommandInput {
  const pick = [
    'AttributeDefinitions',
    'KeySchema',
    'BillingMode',
    'GlobalSecondaryIndexes',
    'LocalSecondaryIndexes',
  ];
  const input: Record<string, unknown> = { TableName: tableName };
  for (const key of pick) if (properties[key] !== undefined) input[key] = properties[key];
  return input as unknown as CreateTableCommandInput;
}

export async function provisionState(config: KdrConfig, file: string): Promise<string[]> {
  const names = resourceNames(config) as Record<string, string>;
  const clients = createAwsClients(config);
  const created: string[] = [];
  try {
    for (const [logicalId, resource] of Object.entries(readStateResources(file))) {
      const name = names[logicalId];
      if (!name) continue;
      if (resource.Type === 'AWS::DynamoDB::Table') {
        try {
          await clients.dynamodb.send(new CreateTableCommand(createTableInput(resource.Properties, name)));
          created.push(`dynamodb table ${name}`);
        } catch (error) {
          if (!(error instanceof ResourceInUseException)) throw error;
        }
      } else if (resource.Type === 'AWS::S3::Bucket') {
        try {
          await clients.s3.send(new CreateBucketCommand({ Bucket: name }));
          created.push(`s3 bucket ${name}`);
        } catch (error) {
          if (!(error instanceof BucketAlreadyOwnedByYou)) throw error;
        }
        const versioning = resource.Properties.VersioningConfiguration as { Status?: string } | undefined;
        if (versioning?.Status === 'Enabled') {
          await clients.s3.send(
            new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: 'Enabled' } }),
          );
        }
      }
    }
  } finally {
    destroyAwsClients(clients);
  }
  return created;
}
