import { KafkaError, KdrError, ProducerFencedError } from '../../errors.ts';

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
    return new KafkaError('RECORD_TOO_LARGE', message, { cause: error, details });
  return new KafkaError(info.retriable ? 'KAFKA_UNAVAILABLE' : 'KAFKA_REQUEST_FAILED', message, {
    cause: error,
    details,
  });
}
