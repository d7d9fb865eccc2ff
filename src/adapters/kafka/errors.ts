import { KafkaError, KdrError, type KdrErrorOptions, ProducerFencedError } from '../../errors.ts';

/** The Kafka protocol error (type and code) somewhere in a kafkajs error's cause chain. */
export function kafkaProtocolError(error: unknown): { type?: string; code?: number; retriable: boolean } {
  let current: unknown = error;
  let retriable = (error as { retriable?: boolean })?.retriable ?? false;
  for (let depth = 0; current && depth < 8; depth++) {
    const e = current as {
      type?: string;
      code?: number;
      retriable?: boolean;
      cause?: unknown;
      originalError?: unknown;
    };
    if (e.type || typeof e.code === 'number')
      return { type: e.type, code: e.code, retriable: e.retriable ?? retriable };
    retriable = e.retriable ?? retriable;
    current = e.cause ?? e.originalError;
  }
  return { retriable };
}

// INVALID_PRODUCER_EPOCH (47) is what old request versions see for PRODUCER_FENCED (90).
const FENCED_TYPES = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'TRANSACTION_COORDINATOR_FENCED']);
const FENCED_CODES = new Set([47, 52, 90]);
const TOO_LARGE_TYPES = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/** The broker refused a record batch for its size (the topic's max.message.bytes). */
export function isTooLarge(error: unknown): boolean {
  const { type } = kafkaProtocolError(error);
  return type !== undefined && TOO_LARGE_TYPES.has(type);
}

/**
 * A record the standby topic cannot take, even compressed: retrying cannot help until its
 * max.message.bytes is raised, so the message says which record and what to raise.
 */
export class RecordTooLargeError extends KafkaError {
  constructor(message: string, options?: KdrErrorOptions) {
    super('RECORD_TOO_LARGE', message, options);
  }
}

export function isFenced(error: unknown): boolean {
  const { type, code } = kafkaProtocolError(error);
  return (type !== undefined && FENCED_TYPES.has(type)) || (code !== undefined && FENCED_CODES.has(code));
}

/** A kafkajs failure as a kdr error naming what was being done. */
export function toKdrError(error: unknown, doing: string, details: Record<string, unknown> = {}): KdrError {
  if (error instanceof KdrError) return error;
  const info = kafkaProtocolError(error);
  const what = info.type ? ` (${info.type})` : '';
  const message = `${doing} failed${what}: ${(error as Error)?.message ?? String(error)}`;
  if (isFenced(error))
    return new ProducerFencedError(`${doing}: fenced by a newer writer of the same partition${what}`, {
      cause: error,
      details,
    });
  if (info.type && TOO_LARGE_TYPES.has(info.type))
    return new RecordTooLargeError(message, { cause: error, details });
  return new KafkaError(info.retriable ? 'KAFKA_UNAVAILABLE' : 'KAFKA_REQUEST_FAILED', message, {
    cause: error,
    details,
  });
}
