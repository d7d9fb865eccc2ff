import { AsyncLocalStorage } from 'node:async_hooks';
import { appendFileSync } from 'node:fs';

/**
 * A record of every AWS call, for the suite's IAM check (infra/aws/awsCalls.ts evaluates each against
 * the role of the function that made it). Only when KDR_AWS_CALL_LOG names a file: tests set it, a
 * deployment never does, and then nothing is added to the clients.
 */

/** The Lambda function (its short name) on whose behalf the current code runs. */
export const functionScope = new AsyncLocalStorage<string>();

/** Runs a handler as `name`, so that the AWS calls it makes are attributed to that function's role. */
export function inFunction<A extends unknown[], R>(name: string, handler: (...args: A) => Promise<R>) {
  return (...args: A): Promise<R> => functionScope.run(name, () => handler(...args));
}

export interface RecordedCall {
  function: string | null;
  client: string;
  command: string;
  input: Record<string, unknown>;
}

// The parts of a command's input that name what it acts on; values (items, bodies) are never logged.
const NAMING_FIELDS = [
  'TableName',
  'IndexName',
  'Bucket',
  'Key',
  'Prefix',
  'SecretId',
  'FunctionName',
  'UUID',
];

function naming(input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of NAMING_FIELDS) if (typeof input[field] === 'string') out[field] = input[field];
  if (input.RequestItems && typeof input.RequestItems === 'object')
    out.RequestItems = Object.keys(input.RequestItems as object);
  if (Array.isArray(input.TransactItems))
    out.TransactItems = (input.TransactItems as Record<string, { TableName?: string }>[]).map((item) =>
      Object.fromEntries(Object.entries(item).map(([kind, body]) => [kind, body?.TableName])),
    );
  const del = input.Delete as { Objects?: { Key?: string }[] } | undefined;
  if (Array.isArray(del?.Objects)) out.DeleteKeys = del.Objects.map((o) => o.Key);
  return out;
}

interface MiddlewareClient {
  middlewareStack: {
    add(
      middleware: (
        next: (args: { input: Record<string, unknown> }) => Promise<unknown>,
        context: { clientName?: string; commandName?: string },
      ) => (args: { input: Record<string, unknown> }) => Promise<unknown>,
      options: { step: 'initialize'; name: string },
    ): void;
  };
}

/** Adds the recording middleware to an SDK client when KDR_AWS_CALL_LOG is set; returns the client. */
export function recordAwsCalls<C>(client: C): C {
  const file = process.env.KDR_AWS_CALL_LOG;
  if (!file) return client;
  (client as unknown as MiddlewareClient).middlewareStack.add(
    (next, context) => async (args) => {
      const call: RecordedCall = {
        function: functionScope.getStore() ?? null,
        client: context.clientName ?? 'unknown',
        command: context.commandName ?? 'unknown',
        input: naming(args.input ?? {}),
      };
      appendFileSync(file, `${JSON.stringify(call)}\n`);
      return next(args);
    },
    { step: 'initialize', name: 'kdrAwsCallLog' },
  );
  return client;
}
