import { type KdrConfig, loadConfig } from '../config.ts';
import { createLogger, type Logger } from '../logger.ts';
import { createRuntime, type Runtime } from '../runtime.ts';

/** Configuration (with command-line overrides), a logger for the terminal, and the runtime. */
export function cliRuntime(overrides: Partial<Record<string, string>> = {}): {
  config: KdrConfig;
  logger: Logger;
  runtime: Runtime;
} {
  const env = { ...process.env };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) env[key] = value;
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel, {}, { pretty: Boolean(process.stderr.isTTY) });
  return { config, logger, runtime: createRuntime(config, logger) };
}

/** Runs `fn` with a runtime and always closes it. */
export async function withRuntime<T>(
  overrides: Partial<Record<string, string>>,
  fn: (ctx: ReturnType<typeof cliRuntime>) => Promise<T>,
): Promise<T> {
  const ctx = cliRuntime(overrides);
  try {
    return await fn(ctx);
  } finally {
    ctx.logger.debug('closing the runtime');
    await ctx.runtime.close();
    ctx.logger.debug('runtime closed');
  }
}

/** A promise that resolves on the first SIGINT/SIGTERM (later ones only say kdr is still stopping). */
export function stopSignal(note: (line: string) => void): {
  stopped: Promise<string>;
  isStopping: () => boolean;
} {
  let received = false;
  const stopped = new Promise<string>((resolve) => {
    const onSignal = (signal: string) => {
      if (received) return note(`kdr: still stopping (${signal} again ignored)`);
      received = true;
      note(`kdr: ${signal} received, stopping`);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return { stopped, isStopping: () => received };
}
