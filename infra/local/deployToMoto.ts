import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  CloudFormationClient,
  CreateStackCommand,
  DescribeStacksCommand,
  type Parameter,
  UpdateStackCommand,
} from '@aws-sdk/client-cloudformation';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

/**
 * Deploys a packaged stack (`sls package --package DIR`) into moto the way osls deploys it into AWS:
 * create the stack with the create template (the deployment bucket), upload the function zips under the
 * keys the update template names, then update the stack with it. osls cannot do this against moto
 * itself: moto answers its stack-resource listing with an error once a self-managed Kafka event source
 * mapping (which has no EventSourceArn) is in the stack, so such mappings are left out here and
 * reported as not deployed.
 */

export interface MotoDeployment {
  stackName: string;
  /** Logical ids left out, by resource type, because moto cannot create or list them. */
  leftOut: Record<string, string[]>;
  template: { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };
}

/** Resource types moto's CloudFormation cannot hold without breaking the stack's own API. */
const BREAKS_MOTO = ['AWS::Lambda::EventSourceMapping'];

interface Clients {
  cloudformation: CloudFormationClient;
  s3: S3Client;
}

export function motoClients(endpoint: string, region = 'us-east-1'): Clients {
  const common = { endpoint, region, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } };
  return {
    cloudformation: new CloudFormationClient(common),
    s3: new S3Client({ ...common, forcePathStyle: true }),
  };
}

async function waitForStack(cf: CloudFormationClient, stackName: string, done: string): Promise<void> {
  for (let i = 0; i < 120; i++) {
    const stack = (await cf.send(new DescribeStacksCommand({ StackName: stackName }))).Stacks?.[0];
    const status = stack?.StackStatus ?? 'UNKNOWN';
    if (status === done) return;
    if (status.endsWith('_FAILED') || status.includes('ROLLBACK'))
      throw new Error(`stack ${stackName} is ${status}: ${stack?.StackStatusReason ?? 'no reason given'}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`stack ${stackName} did not reach ${done} within 60 s`);
}

export async function deployToMoto(
  clients: Clients,
  packageDir: string,
  stackName: string,
  parameters: Parameter[] = [],
): Promise<MotoDeployment> {
  const read = (name: string) => JSON.parse(readFileSync(path.join(packageDir, name), 'utf8'));
  const capabilities = ['CAPABILITY_IAM', 'CAPABILITY_NAMED_IAM'] as const;
  const create = read('cloudformation-template-create-stack.json');
  await clients.cloudformation.send(
    new CreateStackCommand({
      StackName: stackName,
      TemplateBody: JSON.stringify(create),
      Capabilities: [...capabilities],
      Parameters: parameters,
    }),
  );
  await waitForStack(clients.cloudformation, stackName, 'CREATE_COMPLETE');
  const outputs = (await clients.cloudformation.send(new DescribeStacksCommand({ StackName: stackName })))
    .Stacks?.[0]?.Outputs;
  const bucket = outputs?.find((o) => o.OutputKey === 'ServerlessDeploymentBucketName')?.OutputValue;
  if (!bucket) throw new Error(`stack ${stackName} has no ServerlessDeploymentBucketName output`);

  const template = read('cloudformation-template-update-stack.json') as MotoDeployment['template'];
  for (const zip of readdirSync(packageDir).filter((f) => f.endsWith('.zip'))) {
    const fn = Object.values(template.Resources).find(
      (r) =>
        r.Type === 'AWS::Lambda::Function' &&
        String((r.Properties?.Code as { S3Key?: string } | undefined)?.S3Key).endsWith(`/${zip}`),
    );
    if (!fn) throw new Error(`no function of the template is packaged as ${zip}`);
    const key = (fn.Properties!.Code as { S3Key: string }).S3Key;
    await clients.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: readFileSync(path.join(packageDir, zip)) }),
    );
  }
  const leftOut: Record<string, string[]> = {};
  const deployed = structuredClone(template);
  for (const [id, r] of Object.entries(deployed.Resources)) {
    if (!BREAKS_MOTO.includes(r.Type)) continue;
    leftOut[r.Type] = [...(leftOut[r.Type] ?? []), id];
    delete deployed.Resources[id];
  }
  await clients.cloudformation.send(
    new UpdateStackCommand({
      StackName: stackName,
      TemplateBody: JSON.stringify(deployed),
      Capabilities: [...capabilities],
      Parameters: parameters,
    }),
  );
  await waitForStack(clients.cloudformation, stackName, 'UPDATE_COMPLETE');
  return { stackName, leftOut, template };
}
