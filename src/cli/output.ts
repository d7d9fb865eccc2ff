import { describeError, isKdrError } from '../errors.ts';

/** Prints data for scripts (`--json`) or people. */
export function emit(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human()}\n`);
}

/** Progress and notes go to stderr so that stdout stays parseable. */
export function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A failed command: one clear line (no stack) and an exit code per error kind. */
export function fail(error: unknown, json: boolean): never {
  if (isKdrError(error)) {
    if (json) process.stdout.write(`${JSON.stringify(error.toJSON(), null, 2)}\n`);
    process.stderr.write(`kdr: ${error.message}\n`);
    if (process.env.KDR_LOG_LEVEL === 'debug' && error.cause)
      process.stderr.write(`${describeError(error.cause)}\n`);
    process.exit(error.exitCode);
  }
  if (json)
    process.stdout.write(`${JSON.stringify({ error: 'UNEXPECTED', message: describeError(error) })}\n`);
  process.stderr.write(`kdr: unexpected error: ${describeError(error)}\n`);
  if (process.env.KDR_LOG_LEVEL === 'debug' && error instanceof Error)
    process.stderr.write(`${error.stack}\n`);
  process.exit(1);
}

/** Fixed-width text table for human output. */
export function table(rows: (string | number)[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => String(c).padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * Ends the process once a command has finished. kafkajs can leave a socket or timer behind after every
 * client was disconnected (a reconnect scheduled by a request that completed during disconnect), which
 * would keep a finished command alive until something kills it; what kdr wrote is durable by then.
 */
export async function exitWhenDone(): Promise<never> {
  if (process.env.KDR_LOG_LEVEL === 'debug') {
    const left = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    if (left.length > 0) process.stderr.write(`kdr: exiting with active resources: ${left.join(', ')}\n`);
  }
  // stdout may be a pipe: let it drain before exiting.
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(process.exitCode ?? 0);
}
