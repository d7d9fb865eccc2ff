import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isWildcardOnlyAction, runSimulation } from '@cloud-copilot/iam-simulate';

/**
 * The packaged CloudFormation template as IAM sees it once deployed: every intrinsic resolved for one
 * account and region, each function's role with its policies (inline and the stack's managed ones), and
 * a request evaluated against a role with a maintained IAM policy simulator (@cloud-copilot/iam-simulate,
 * AGPL, a development dependency only: nothing of it is bundled into the functions).
 */

export interface Resource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string | string[];
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
  Metadata?: unknown;
}
export interface Template {
  Resources: Record<string, Resource>;
}
export interface Stack {
  accountId: string;
  region: string;
  resources: Record<string, Resource>;
}

const PARTITION = 'aws';

/** Reads a packaged template and resolves it for an account and region. */
export function loadStack(path: string, accountId = '000000000000', region = 'us-east-1'): Stack {
  const template = JSON.parse(readFileSync(path, 'utf8')) as Template;
  return resolveStack(template, accountId, region);
}

export function resolveStack(template: Template, accountId: string, region: string): Stack {
  const stack: Stack = { accountId, region, resources: template.Resources };
  const resolved: Record<string, Resource> = {};
  for (const [id, resource] of Object.entries(template.Resources)) {
    resolved[id] = resolveValue(resource, stack) as Resource;
  }
  return { accountId, region, resources: resolved };
}

/** A fake but stable key id per logical id: the template cannot know the real one. */
function keyId(logicalId: string): string {
  const h = createHash('sha256').update(logicalId).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function pseudo(name: string, stack: Stack): string | undefined {
  switch (name) {
    case 'AWS::AccountId':
      return stack.accountId;
    case 'AWS::Region':
      return stack.region;
    case 'AWS::Partition':
      return PARTITION;
    case 'AWS::URLSuffix':
      return 'amazonaws.com';
    case 'AWS::StackName':
      return 'kdr-stack';
    default:
      return undefined;
  }
}

function prop(stack: Stack, id: string, name: string): string {
  const value = resolveValue(stack.resources[id]?.Properties?.[name], stack);
  return typeof value === 'string' ? value : id;
}

function refOf(id: string, stack: Stack): string {
  const p = pseudo(id, stack);
  if (p !== undefined) return p;
  const resource = stack.resources[id];
  if (!resource) throw new Error(`Ref to ${id}: no such resource in the template`);
  const { accountId: a, region: r } = stack;
  switch (resource.Type) {
    case 'AWS::DynamoDB::Table':
    case 'AWS::DynamoDB::GlobalTable':
      return prop(stack, id, 'TableName');
    case 'AWS::S3::Bucket':
      return prop(stack, id, 'BucketName');
    case 'AWS::KMS::Key':
      return keyId(id);
    case 'AWS::SQS::Queue':
      return `https://sqs.${r}.amazonaws.com/${a}/${prop(stack, id, 'QueueName')}`;
    case 'AWS::IAM::ManagedPolicy':
      return `arn:${PARTITION}:iam::${a}:policy/${id}`;
    case 'AWS::IAM::Role':
      return id;
    case 'AWS::Lambda::Function':
      return prop(stack, id, 'FunctionName');
    case 'AWS::SNS::Topic':
      return `arn:${PARTITION}:sns:${r}:${a}:${prop(stack, id, 'TopicName')}`;
    case 'AWS::Logs::LogGroup':
      return prop(stack, id, 'LogGroupName');
    default:
      return id;
  }
}

function getAtt(id: string, attribute: string, stack: Stack): string {
  const resource = stack.resources[id];
  if (!resource) throw new Error(`Fn::GetAtt of ${id}: no such resource in the template`);
  const { accountId: a, region: r } = stack;
  if (attribute === 'QueueName' && resource.Type === 'AWS::SQS::Queue') return prop(stack, id, 'QueueName');
  // Attributes IAM never sees (alarm dimensions, versions): a readable placeholder.
  if (attribute !== 'Arn') return `<${id}.${attribute}>`;
  switch (resource.Type) {
    case 'AWS::DynamoDB::Table':
    case 'AWS::DynamoDB::GlobalTable':
      return `arn:${PARTITION}:dynamodb:${r}:${a}:table/${refOf(id, stack)}`;
    case 'AWS::S3::Bucket':
      return `arn:${PARTITION}:s3:::${refOf(id, stack)}`;
    case 'AWS::KMS::Key':
      return `arn:${PARTITION}:kms:${r}:${a}:key/${keyId(id)}`;
    case 'AWS::SQS::Queue':
      return `arn:${PARTITION}:sqs:${r}:${a}:${prop(stack, id, 'QueueName')}`;
    case 'AWS::IAM::Role':
      return `arn:${PARTITION}:iam::${a}:role/${id}`;
    case 'AWS::Lambda::Function':
      return `arn:${PARTITION}:lambda:${r}:${a}:function:${refOf(id, stack)}`;
    case 'AWS::Logs::LogGroup':
      return `arn:${PARTITION}:logs:${r}:${a}:log-group:${refOf(id, stack)}:*`;
    case 'AWS::SNS::Topic':
      return refOf(id, stack);
    case 'AWS::Events::Rule':
      return `arn:${PARTITION}:events:${r}:${a}:rule/${id}`;
    default:
      return `<${id}.Arn>`;
  }
}

function sub(template: string, vars: Record<string, unknown>, stack: Stack): string {
  return template.replace(/\$\{([^}!]+)\}/g, (_, name: string) => {
    if (name in vars) return String(resolveValue(vars[name], stack));
    const dot = name.indexOf('.');
    if (dot > 0 && !name.startsWith('AWS::')) return getAtt(name.slice(0, dot), name.slice(dot + 1), stack);
    return refOf(name, stack);
  });
}

const NO_VALUE = Symbol('AWS::NoValue');

function resolveValue(value: unknown, stack: Stack): unknown {
  if (Array.isArray(value)) {
    return value.map((v) => resolveValue(v, stack)).filter((v) => v !== NO_VALUE);
  }
  if (!value || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 1) {
    const [key, arg] = entries[0]!;
    if (key === 'Ref') return arg === 'AWS::NoValue' ? NO_VALUE : refOf(String(arg), stack);
    if (key === 'Fn::GetAtt') {
      const [id, attribute] = Array.isArray(arg) ? arg : String(arg).split('.');
      return getAtt(String(id), String(attribute), stack);
    }
    if (key === 'Fn::Sub') {
      const [text, vars] = Array.isArray(arg) ? arg : [arg, {}];
      return sub(String(text), vars as Record<string, unknown>, stack);
    }
    if (key === 'Fn::Join') {
      const [separator, parts] = arg as [string, unknown[]];
      return (resolveValue(parts, stack) as unknown[]).join(separator);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of entries) {
    const resolved = resolveValue(v, stack);
    if (resolved !== NO_VALUE) out[k] = resolved;
  }
  return out;
}

interface PolicyDocument {
  Version: string;
  Statement: unknown[];
}

/** The role (logical id) each function runs as. */
export function functionRoles(stack: Stack): Record<string, string> {
  const roles: Record<string, string> = {};
  for (const [id, resource] of Object.entries(stack.resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const arn = String(resource.Properties?.Role);
    roles[id] = arn.slice(arn.lastIndexOf('/') + 1);
  }
  return roles;
}

/** The role of a function named as its handler names itself (`failover`: FailoverLambdaFunction's role). */
export function roleOfFunction(stack: Stack, shortName: string): string | undefined {
  return functionRoles(stack)[`${shortName[0]!.toUpperCase()}${shortName.slice(1)}LambdaFunction`];
}

/** Every identity policy of a role: inline, and the stack's own managed policies it attaches. */
export function rolePolicies(stack: Stack, roleId: string): { name: string; policy: PolicyDocument }[] {
  const role = stack.resources[roleId];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${roleId} is not a role of the template`);
  const props = role.Properties as {
    Policies?: { PolicyName: string; PolicyDocument: PolicyDocument }[];
    ManagedPolicyArns?: string[];
  };
  const policies = (props.Policies ?? []).map((p) => ({ name: p.PolicyName, policy: p.PolicyDocument }));
  for (const arn of props.ManagedPolicyArns ?? []) {
    const id = arn.slice(arn.lastIndexOf('/') + 1);
    const managed = stack.resources[id];
    if (managed?.Type !== 'AWS::IAM::ManagedPolicy')
      throw new Error(`${roleId} attaches ${arn}, which is not a policy of this stack: evaluate it by hand`);
    policies.push({
      name: id,
      policy: (managed.Properties as { PolicyDocument: PolicyDocument }).PolicyDocument,
    });
  }
  return policies;
}

export interface Decision {
  allowed: boolean;
  /** The simulator's result, or its validation errors. */
  detail: string;
}

/**
 * A KMS key's policy decides whether IAM policies count at all. The stack's own keys bring theirs; a key
 * outside the stack (a replica region's, the secrets') is assumed to have the default policy, which
 * lets the account's IAM policies decide.
 */
function keyPolicy(stack: Stack, resource: string): unknown {
  const own = Object.entries(stack.resources).find(
    ([id, r]) => r.Type === 'AWS::KMS::Key' && resource.endsWith(`:key/${keyId(id)}`),
  )?.[1];
  if (own) return (own.Properties as { KeyPolicy: unknown }).KeyPolicy;
  const account = resource.split(':')[4];
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { AWS: `arn:${PARTITION}:iam::${account}:root` },
        Action: 'kms:*',
        Resource: '*',
      },
    ],
  };
}

/** Whether `roleId` may call `action` on `resource` (with these condition keys), as IAM would decide. */
export async function evaluate(
  stack: Stack,
  roleId: string,
  action: string,
  resource: string,
  context: Record<string, string | string[]> = {},
): Promise<Decision> {
  const [service, name] = action.split(':') as [string, string];
  // Actions without resource-level permissions are requested on "*", whatever they act on.
  const target = (await isWildcardOnlyAction(service, name)) ? '*' : resource;
  const result = await runSimulation(
    {
      identityPolicies: rolePolicies(stack, roleId),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(service === 'kms' && target !== '*' ? { resourcePolicy: keyPolicy(stack, target) } : {}),
      request: {
        action,
        principal: `arn:${PARTITION}:iam::${stack.accountId}:role/${roleId}`,
        resource: {
          accountId: target === '*' ? stack.accountId : target.split(':')[4] || stack.accountId,
          resource: target,
        },
        contextVariables: context,
      },
    },
    {},
  );
  if (result.resultType === 'error')
    return { allowed: false, detail: `simulation refused: ${JSON.stringify(result.errors)}` };
  return { allowed: result.overallResult === 'Allowed', detail: result.overallResult };
}
