import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import type { KdrConfig } from '../../config.ts';
import { recordAwsCalls } from './callLog.ts';

export interface AwsClients {
  dynamodb: DynamoDBClient;
  s3: S3Client;
}

/** The SDK clients for the configured endpoint (moto in the lab, AWS otherwise), built once per process. */
export function createAwsClients(config: Pick<KdrConfig, 'aws'>): AwsClients {
  const common = {
    region: config.aws.region,
    ...(config.aws.endpoint ? { endpoint: config.aws.endpoint } : {}),
    ...(config.aws.credentials ? { credentials: config.aws.credentials } : {}),
    // The SDK's standard retry mode backs off on throttling and 5xx; kdr's own loops retry above it.
    maxAttempts: 5,
  };
  return {
    dynamodb: recordAwsCalls(new DynamoDBClient(common)),
    // An endpoint on 127.0.0.1 cannot take bucket names as subdomains.
    s3: recordAwsCalls(new S3Client({ ...common, forcePathStyle: Boolean(config.aws.endpoint) })),
  };
}

export function destroyAwsClients(clients: AwsClients): void {
  clients.dynamodb.destroy();
  clients.s3.destroy();
}
