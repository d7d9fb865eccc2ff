/**
 * Every error kdr raises on purpose. A closed list of codes lets callers (CLI, Lambda adapters, tests)
 * branch on `code`; `retryable` tells whether trying the same thing again can succeed.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: { retryable: false, exitCode: 2 },
  INPUT_INVALID: { retryable: false, exitCode: 2 },
  EVENT_INVALID: { retryable: false, exitCode: 2 },
  PREREQUISITE_MISSING: { retryable: false, exitCode: 3 },
  PORT_IN_USE: { retryable: false, exitCode: 3 },
  LAB_START_FAILED: { retryable: false, exitCode: 3 },
  LAB_STATE_CONFLICT: { retryable: false, exitCode: 3 },
  KAFKA_UNAVAILABLE: { retryable: true, exitCode: 4 },
  KAFKA_REQUEST_FAILED: { retryable: false, exitCode: 4 },
  PRODUCER_FENCED: { retryable: true, exitCode: 4 },
  RECORD_TOO_LARGE: { retryable: false, exitCode: 4 },
  BATCH_INCOMPLETE: { retryable: true, exitCode: 4 },
  TOPIC_SYNC_FAILED: { retryable: true, exitCode: 4 },
  STORE_UNAVAILABLE: { retryable: true, exitCode: 4 },
  STORE_CONDITION_FAILED: { retryable: false, exitCode: 4 },
  NOT_MIRRORING: { retryable: false, exitCode: 5 },
  STATE_CONFLICT: { retryable: false, exitCode: 5 },
  /** Another process holds the operation's lease: retry once it expires. */
  OPERATION_IN_PROGRESS: { retryable: true, exitCode: 5 },
  /** This process no longer owns the operation (taken over, or aborted): it stops at once. */
  LEASE_LOST: { retryable: false, exitCode: 5 },
  NOT_FOUND: { retryable: false, exitCode: 6 },
  INTEGRITY_FAILED: { retryable: false, exitCode: 7 },
  TIMEOUT: { retryable: true, exitCode: 8 },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface KdrErrorOptions {
  cause?: unknown;
  /** Facts for logs and `--json` output (never secrets). */
  details?: Record<string, unknown>;
}

export class KdrError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: KdrErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = ERROR_CODES[code].retryable;
    this.details = options.details ?? {};
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exitCode;
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, retryable: this.retryable, ...this.details };
  }
}

export class ConfigError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('CONFIG_INVALID', message, options);
  }
}

export class InputError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('INPUT_INVALID', message, options);
  }
}

export class EventError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('EVENT_INVALID', message, options);
  }
}

export class PrerequisiteError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('PREREQUISITE_MISSING', message, options);
  }
}

export class LabError extends KdrError {}

export class KafkaError extends KdrError {}

export class ProducerFencedError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('PRODUCER_FENCED', message, options);
  }
}

/** Part of a batch was mirrored (a long gap being filled); delivering the batch again continues it. */
export class IncompleteBatchError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('BATCH_INCOMPLETE', message, options);
  }
}

export class StoreError extends KdrError {}

export class StateError extends KdrError {}

export class NotFoundError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('NOT_FOUND', message, options);
  }
}

export class TimeoutError extends KdrError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('TIMEOUT', message, options);
  }
}

export const isKdrError = (error: unknown): error is KdrError => error instanceof KdrError;

/** The message of any thrown value, with its cause chain, for one-line reports. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    parts.push(current instanceof Error ? current.message : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(': caused by: ');
}
