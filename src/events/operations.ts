import { z } from 'zod';
import { EventError } from '../errors.ts';

/**
 * Payloads of the invoked functions (failover, failback, checkpoint), validated before anything is
 * read or written. The CLI builds the same objects from its flags.
 */

export const pair = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected a pair name of 1-64 letters, digits, ".", "_" or "-"');
const timeoutSeconds = z
  .number({ error: (issue) => `expected a number of seconds, got ${JSON.stringify(issue.input)}` })
  .positive({ error: (issue) => `expected more than 0 seconds, got ${issue.input}` })
  .max(3600, { error: (issue) => `expected at most 3600 seconds, got ${issue.input}` });

const operationIdField = z
  .string()
  .regex(
    /^(fo|fb|legacy)-[A-Za-z0-9-]{1,80}$/,
    'expected an operation id such as fo-20261202T013000Z-e4-3fa9c1',
  );

/**
 * `mode` absent: a new failover is planned, and one in progress goes on in its own mode. `operationId`:
 * continue (or report) that operation only, never start another (continuations and retried invocations).
 * `wait`: run in this invocation (until its time runs out) instead of handing over to a continuation.
 */
export const failoverRequestSchema = z
  .object({
    mode: z
      .enum(['planned', 'unplanned'], {
        error: (issue) => `expected "planned" or "unplanned", got ${JSON.stringify(issue.input)}`,
      })
      .optional(),
    timeoutSeconds: timeoutSeconds.default(60),
    operationId: operationIdField.optional(),
    abort: z.boolean().default(false),
    wait: z.boolean().default(false),
    pair: pair.optional(),
  })
  .strict();

export const failbackRequestSchema = z
  .object({
    timeoutSeconds: timeoutSeconds.default(120),
    /** Place moved groups before the outage records (they read them, and re-read the copies after them). */
    readOutage: z.boolean().default(false),
    operationId: operationIdField.optional(),
    abort: z.boolean().default(false),
    wait: z.boolean().default(false),
    pair: pair.optional(),
  })
  .strict();

export const emptyRequestSchema = z.object({ pair: pair.optional() }).strict();

export type FailoverRequest = z.output<typeof failoverRequestSchema>;
export type FailbackRequest = z.output<typeof failbackRequestSchema>;

/**
 * Parses an invocation payload (an object, or a JSON string as `sls invoke --data` may pass it) and
 * checks that it addresses this deployment's pair.
 */
export function parseRequest<T extends z.ZodType>(
  schema: T,
  payload: unknown,
  configuredPair: string,
  what: string,
): z.output<T> {
  let value = payload ?? {};
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch (error) {
      throw new EventError(`malformed ${what} request: not JSON (${(error as Error).message})`);
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : '(request)';
    throw new EventError(`malformed ${what} request at ${where}: ${issue.message}`);
  }
  const request = parsed.data as { pair?: string };
  if (request.pair !== undefined && request.pair !== configuredPair) {
    throw new EventError(
      `${what} request is for pair ${JSON.stringify(request.pair)}, but this deployment serves pair ${JSON.stringify(configuredPair)}`,
    );
  }
  return parsed.data;
}
