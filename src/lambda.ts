import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { recordAwsCalls } from './adapters/aws/callLog.ts';
import { SecretsManagerSource } from './adapters/aws/secretsManager.ts';
import type { KdrConfig } from './config.ts';
import { credentialsOnce } from './secrets.ts';

/**
 * The configuration a Lambda handler connects with: SASL credentials read from Secrets Manager on the
 * first invocation and kept for the container's life (a failed read is tried again next invocation).
 */
export function lambdaCredentials(config: KdrConfig): () => Promise<KdrConfig> {
  return credentialsOnce(config, () => SecretsManagerSource.fromConfig(config));
}

/** Time kept in hand to save progress, hand over to a continuation and return. */
export const CONTINUATION_MARGIN_MS = 15_000;

/**
 * What an invocation may spend: until its deadline less the margin. A requested wait longer than that
 * is not accepted silently: the answer says it is clamped, and the work goes on in a continuation.
 */
export function invocationBudget(
  context: { getRemainingTimeInMillis?: () => number } | undefined,
  requestedMs: number,
  now = Date.now(),
): { runDeadline?: number; warnings: string[] } {
  const remaining = context?.getRemainingTimeInMillis?.();
  if (remaining === undefined) return { warnings: [] };
  const usable = Math.max(0, remaining - CONTINUATION_MARGIN_MS);
  const warnings =
    requestedMs > usable
      ? [
          `timeoutSeconds ${requestedMs / 1000} is longer than this invocation can run (${Math.floor(usable / 1000)} s left before its own timeout): it works until then, and the operation continues in the next invocation`,
        ]
      : [];
  return { runDeadline: now + usable, warnings };
}

/** In a Lambda invocation in AWS, not `sls invoke local` (which sets IS_LOCAL) nor a test calling the handler. */
export function inAws(): boolean {
  return Boolean(process.env.AWS_LAMBDA_FUNCTION_NAME) && process.env.IS_LOCAL !== 'true';
}

/**
 * Invokes this function again, asynchronously, with `payload` (a continuation). In AWS only: elsewhere
 * (`sls invoke local`, tests) nothing is invoked and the caller says the operation waits for the next run.
 */
export async function invokeSelf(region: string, payload: unknown): Promise<boolean> {
  if (!inAws()) return false;
  const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME!;
  const lambda = recordAwsCalls(new LambdaClient({ region }));
  try {
    await lambda.send(
      new InvokeCommand({
        FunctionName: functionName,
        InvocationType: 'Event',
        Payload: Buffer.from(JSON.stringify(payload)),
      }),
    );
    return true;
  } finally {
    lambda.destroy();
  }
}
