import { SecretsManagerSource } from '../adapters/aws/secretsManager.ts';
import { type KdrConfig, loadConfig } from '../config.ts';
import { emptySelectionMessage, isInternalTopic, topicSelector } from '../core/topicSync.ts';
import { InputError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { createRuntime, type Runtime } from '../runtime.ts';
import { credentialsOnce } from '../secrets.ts';

/** Configuration (with command-line overrides and SASL credentials read from their secrets) and a logger. */
export async function cliConfig(overrides: Partial<Record<string, string>> = {}): Promise<{
  config: KdrConfig;
  logger: Logger;
}> {
  const env = { ...process.env };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) env[key] = value;
  const loaded = loadConfig(env);
  const logger = createLogger(loaded.logLevel, {}, { pretty: Boolean(process.stderr.isTTY) });
  let secrets: SecretsManagerSource | undefined;
  try {
    const config = await credentialsOnce(loaded, () => {
      secrets = SecretsManagerSource.fromConfig(loaded);
      return secrets;
    })();
    return { config, logger };
  } finally {
    secrets?.destroy();
  }
}

/** Runs `fn` with a runtime and always closes it. */
export async function withRuntime<T>(
  overrides: Partial<Record<string, string>>,
  fn: (ctx: { config: KdrConfig; logger: Logger; runtime: Runtime }) => Promise<T>,
): Promise<T> {
  const { config, logger } = await cliConfig(overrides);
  const ctx = { config, logger, runtime: createRuntime(config, logger) };
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

/** How the operator gave the topic regex, for messages: the option, or the environment variable. */
export function topicsOption(option: string | undefined): string {
  return option !== undefined ? '--topics' : 'KDR_TOPICS';
}

/**
 * Checks a `--topics` regex the way kdr uses it (anchored, a full match of the name); returns it, or
 * throws an InputError naming it. Commands call it before they connect to anything.
 */
export function checkTopicsRegex(regex: string | undefined): string | undefined {
  if (regex === undefined) return undefined;
  try {
    topicSelector(regex);
  } catch (error) {
    throw new InputError(
      `--topics ${JSON.stringify(regex)} is not a valid regular expression (${(error as Error).message})`,
      { details: { regex } },
    );
  }
  return regex;
}

/** The input error of a topic regex that selects none of `existing` (see emptySelectionMessage). */
export function emptySelectionError(input: {
  regex: string;
  option: string;
  where: string;
  existing: readonly string[];
}): InputError {
  const { message, suggestion, shown, count } = emptySelectionMessage(input);
  return new InputError(message, {
    details: {
      regex: input.regex,
      match: 'full',
      ...(suggestion ? { suggestion } : {}),
      existingTopics: shown,
      existingTopicCount: count,
    },
  });
}

/**
 * Throws emptySelectionError unless `select` picks at least one of the topics `list` returns (internal
 * topics never count): a command run on a selection of nothing would otherwise report success.
 */
export async function requireSelection(input: {
  list: () => Promise<string[]>;
  select: (name: string) => boolean;
  regex: string;
  option: string;
  where: string;
}): Promise<void> {
  const existing = await input.list();
  if (existing.some((name) => !isInternalTopic(name) && input.select(name))) return;
  throw emptySelectionError({ ...input, existing });
}
