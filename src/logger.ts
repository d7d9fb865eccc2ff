import type { KdrConfig } from './config.ts';

/**
 * Structured logs: one JSON object per line on stderr (or one readable line on a terminal), with context
 * (pair, topic, partition, offsets) merged in. Values under secret-looking keys never reach a log line.
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

export interface LoggerOptions {
  /** One readable line per entry (for a terminal) instead of JSON. */
  pretty?: boolean;
  write?: (line: string) => void;
}

function serialisable(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

const redact = (key: string, value: unknown) => (SECRET_KEY.test(key) && value ? '***' : serialisable(value));

export function createLogger(
  level: LogLevel = 'info',
  base: Record<string, unknown> = {},
  options: LoggerOptions = {},
): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const emit = (at: LogLevel, message: string, context?: Record<string, unknown>) => {
    if (LEVELS[at] < LEVELS[level]) return;
    const fields = { ...base, ...context };
    if (options.pretty) {
      const text = Object.entries(fields)
        .map(
          ([k, v]) =>
            `${k}=${SECRET_KEY.test(k) && v ? '***' : typeof v === 'string' ? v : JSON.stringify(v, redact)}`,
        )
        .join(' ');
      write(
        `${new Date().toISOString().slice(11, 19)} ${at.toUpperCase().padEnd(5)} ${message}${text ? ` ${text}` : ''}`,
      );
      return;
    }
    write(JSON.stringify({ level: at, time: new Date().toISOString(), message, ...fields }, redact));
  };
  return {
    debug: (m, c) => emit('debug', m, c),
    info: (m, c) => emit('info', m, c),
    warn: (m, c) => emit('warn', m, c),
    error: (m, c) => emit('error', m, c),
    child: (context) => createLogger(level, { ...base, ...context }, options),
  };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};
