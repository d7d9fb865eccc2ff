import { existsSync, readFileSync } from 'node:fs';
import type { RecordedCall } from '../../src/adapters/aws/callLog.ts';
import { evaluate, type Stack } from './stackIam.ts';

/**
 * The AWS calls recorded while the suite ran (src/adapters/aws/callLog.ts), as the IAM requests AWS
 * authorizes for them, evaluated against the role of the function that made each one in the packaged
 * template. Calls made outside a function (the CLI, test helpers) have no role here and are skipped.
 */

export interface IamRequest {
  action: string;
  resource: string;
  context?: Record<string, string>;
}

const DYNAMODB_TRANSACT: Record<string, string> = {
  Put: 'dynamodb:PutItem',
  Update: 'dynamodb:UpdateItem',
  Delete: 'dynamodb:DeleteItem',
  ConditionCheck: 'dynamodb:ConditionCheckItem',
  Get: 'dynamodb:GetItem',
};

/** The bucket's default SSE-KMS key in the template: S3 calls on it use the key on the caller's behalf. */
function bucketKey(stack: Stack, bucket: string): string | undefined {
  for (const r of Object.values(stack.resources)) {
    if (r.Type !== 'AWS::S3::Bucket') continue;
    const p = r.Properties as {
      BucketName?: string;
      BucketEncryption?: {
        ServerSideEncryptionConfiguration: { ServerSideEncryptionByDefault: { KMSMasterKeyID?: string } }[];
      };
    };
    if (p.BucketName !== bucket) continue;
    return p.BucketEncryption?.ServerSideEncryptionConfiguration[0]?.ServerSideEncryptionByDefault
      .KMSMasterKeyID;
  }
  return undefined;
}

/** The function the stack's event source mappings invoke (kdr has one: the mirror). */
function mappedFunction(stack: Stack): string {
  const mapping = Object.values(stack.resources).find((r) => r.Type === 'AWS::Lambda::EventSourceMapping');
  const target = (mapping?.Properties as { FunctionName?: string } | undefined)?.FunctionName;
  const mirror = stack.resources.MirrorLambdaFunction?.Properties as { FunctionName?: string } | undefined;
  return target ?? mirror?.FunctionName ?? 'unknown-function';
}

/** What IAM authorizes for one recorded call (several requests for batches, transactions and KMS). */
export function iamRequestsOf(call: RecordedCall, stack: Stack): IamRequest[] {
  const { accountId: a, region: r } = stack;
  const command = call.command.replace(/Command$/, '');
  const input = call.input as Record<string, string | string[] | Record<string, string>[] | undefined>;
  const table = (name: string, index?: string) =>
    `arn:aws:dynamodb:${r}:${a}:table/${name}${index ? `/index/${index}` : ''}`;
  switch (call.client) {
    case 'DynamoDBClient': {
      if (command === 'TransactWriteItems' || command === 'TransactGetItems')
        return (input.TransactItems as Record<string, string>[]).flatMap((item) =>
          Object.entries(item).map(([kind, name]) => ({
            action: DYNAMODB_TRANSACT[kind]!,
            resource: table(name),
          })),
        );
      if (command === 'BatchWriteItem' || command === 'BatchGetItem')
        return (input.RequestItems as string[]).map((name) => ({
          action: `dynamodb:${command}`,
          resource: table(name),
        }));
      return [
        {
          action: `dynamodb:${command}`,
          resource: table(input.TableName as string, input.IndexName as string),
        },
      ];
    }
    case 'S3Client': {
      const bucket = input.Bucket as string;
      const object = (key: string) => `arn:aws:s3:::${bucket}/${key}`;
      const key = bucketKey(stack, bucket);
      const kms = (...actions: string[]) => (key ? actions.map((action) => ({ action, resource: key })) : []);
      switch (command) {
        case 'PutObject':
          return [
            { action: 's3:PutObject', resource: object(input.Key as string) },
            ...kms('kms:GenerateDataKey'),
          ];
        case 'CreateMultipartUpload':
          return [
            { action: 's3:PutObject', resource: object(input.Key as string) },
            ...kms('kms:GenerateDataKey', 'kms:Decrypt'),
          ];
        case 'UploadPart':
        case 'CompleteMultipartUpload':
          return [{ action: 's3:PutObject', resource: object(input.Key as string) }, ...kms('kms:Decrypt')];
        case 'AbortMultipartUpload':
          return [{ action: 's3:AbortMultipartUpload', resource: object(input.Key as string) }];
        case 'GetObject':
        case 'HeadObject':
          return [{ action: 's3:GetObject', resource: object(input.Key as string) }, ...kms('kms:Decrypt')];
        case 'ListObjectsV2':
          return [{ action: 's3:ListBucket', resource: `arn:aws:s3:::${bucket}` }];
        case 'DeleteObject':
          return [{ action: 's3:DeleteObject', resource: object(input.Key as string) }];
        case 'DeleteObjects':
          return (input.DeleteKeys as string[]).map((k) => ({
            action: 's3:DeleteObject',
            resource: object(k),
          }));
        default:
          return [{ action: `s3:${command}`, resource: `arn:aws:s3:::${bucket}` }];
      }
    }
    case 'LambdaClient': {
      // UpdateEventSourceMapping names only the mapping: its function is the one the stack's mappings feed.
      const fn = (input.FunctionName as string | undefined) ?? mappedFunction(stack);
      const arn = fn.startsWith('arn:') ? fn : `arn:aws:lambda:${r}:${a}:function:${fn}`;
      if (command === 'Invoke') return [{ action: 'lambda:InvokeFunction', resource: arn }];
      if (command === 'ListEventSourceMappings')
        return [{ action: 'lambda:ListEventSourceMappings', resource: '*' }];
      if (command === 'UpdateEventSourceMapping')
        return [
          {
            action: 'lambda:UpdateEventSourceMapping',
            resource: `arn:aws:lambda:${r}:${a}:event-source-mapping:${input.UUID as string}`,
            context: { 'lambda:FunctionArn': arn },
          },
        ];
      return [{ action: `lambda:${command}`, resource: arn }];
    }
    case 'SecretsManagerClient':
      // The lab's secrets are made per test under moto's ARNs, which no template names. That each
      // function may read the secrets its environment names is a template rule (lambdaRules.ts).
      return [];
    default:
      throw new Error(`no IAM mapping for ${call.client} ${call.command}: add one to infra/aws/awsCalls.ts`);
  }
}

export function readCallLog(path: string): RecordedCall[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as RecordedCall);
}

export interface DeniedCall {
  function: string;
  role: string;
  action: string;
  resource: string;
  call: string;
  detail: string;
}

/**
 * Evaluates every distinct request the functions made. `roleOf` maps a function's short name (the
 * scope its handler ran in) to its role's logical id; `rename` maps lab resource names to the
 * template's where they differ (secrets created per test, for instance).
 */
export async function deniedCalls(
  calls: RecordedCall[],
  stack: Stack,
  roleOf: (fn: string) => string | undefined,
): Promise<{ denied: DeniedCall[]; evaluated: number; byFunction: Record<string, number> }> {
  const seen = new Map<string, Promise<DeniedCall | undefined>>();
  const byFunction: Record<string, number> = {};
  for (const call of calls) {
    if (!call.function) continue;
    const role = roleOf(call.function);
    if (!role)
      throw new Error(`a call was made as function ${call.function}, which the template does not have`);
    for (const request of iamRequestsOf(call, stack)) {
      const key = JSON.stringify([role, request]);
      if (seen.has(key)) continue;
      byFunction[call.function] = (byFunction[call.function] ?? 0) + 1;
      seen.set(
        key,
        evaluate(stack, role, request.action, request.resource, request.context ?? {}).then((decision) =>
          decision.allowed
            ? undefined
            : {
                function: call.function!,
                role,
                action: request.action,
                resource: request.resource,
                call: `${call.client} ${call.command}`,
                detail: decision.detail,
              },
        ),
      );
    }
  }
  const results = await Promise.all(seen.values());
  return {
    denied: results.filter((d): d is DeniedCall => d !== undefined),
    evaluated: seen.size,
    byFunction,
  };
}
