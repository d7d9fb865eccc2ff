import type { KdrConfig } from './config.ts';

/**
 * Structured logs: one JSON object per line on stderr, with context (pair, topic, partition, offsets)
 * merged in. Passwords never reach a log line: values under secret-looking keys are replaced.
 */

export type LogLevel = KdrConfig['logLevel'];
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_KEY = /password|secret|token|credential/i;

export interface Logger {
  debug(message: string, context?: Record<string, unknown>): void;
  info(message: string, context?: Record<string, unknown>): void;
  warn(message: string, context?: Record<string, unknown>): void;
  error(message: string, context?: Record<string, unknown>): void;
  child(context: Record<string, unknown>): Logger;
}

export function createLogger(
  level: LogLevel = 'info',
  base: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Logger {
  const emit = (at: LogLevel, message: string, context?: Record<string, unknown>) => {
    if (LEVELS[at] < LEVELS[level]) return;
    const entry = { level: at, time: new Date().toISOString(), message, ...base, ...context };
    write(
      JSON.stringify(entry, (key, value) => (SECRET_KEY.test(key) && value ? '***' : serialisable(value))),
    );
  };
  return {
    debug: (m, c) => emit('debug', m, c),
    info: (m, c) => emit('info', m, c),
    warn: (m, c) => emit('warn', m, c),
    error: (m, c) => emit('error', m, c),
    child: (context) => createLogger(level, { ...base, ...context }, write),
  };
}

function serialisable(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};
