// Types for the untyped CommonJS modules kdr imports.

declare module 'snappyjs' {
  export function compress(input: Uint8Array): Uint8Array;
  export function uncompress(input: Uint8Array): Uint8Array;
}

declare module 'lz4js' {
  export function decompress(input: Uint8Array): Uint8Array;
}

declare module 'kafkajs/src/consumer/batch.js' {
  export default class Batch {
    constructor(topic: string, fetchedOffset: string, partitionData: unknown);
    messages: unknown[];
  }
}

// kafkajs's protocol encoder and decoder, for the one request kdr encodes itself (adapters/kafka/topicIds.ts).
declare module 'kafkajs/src/protocol/encoder.js' {
  const Encoder: unknown;
  export default Encoder;
}

declare module 'kafkajs/src/protocol/decoder.js' {
  const Decoder: unknown;
  export default Decoder;
}

// kafkajs's producer factory, which takes the cluster (connections) it sends through: kdr's transactional
// writers share a few clusters instead of opening one each (adapters/kafka/transactionalWriter.ts).
declare module 'kafkajs/src/producer/index.js' {
  import type { Producer } from 'kafkajs';

  const createProducer: (options: {
    cluster: unknown;
    logger: unknown;
    retry?: object;
    idempotent?: boolean;
    transactionalId?: string;
    transactionTimeout?: number;
  }) => Producer;
  export default createProducer;
}
