import { createRequire } from 'node:module';
import { median } from './harness.ts';

/**
 * The mirror's hot path on small records, before and after kdr's kafkajs patch, side by side in one run:
 * grouping a produce call's messages by partition, and encoding records with two provenance headers.
 * The "before" functions are kafkajs 2.2.4's originals, copied here verbatim for the comparison.
 */

const require = createRequire(import.meta.url);
const Encoder = require('kafkajs/src/protocol/encoder');
const Header = require('kafkajs/src/protocol/recordBatch/header/v0');
const patchedGroup = require('kafkajs/src/producer/groupMessagesPerPartition');
const patchedRecord = require('kafkajs/src/protocol/recordBatch/record/v0');

// kafkajs 2.2.4, src/producer/groupMessagesPerPartition.js
// biome-ignore lint/suspicious/noExplicitAny: kafkajs's untyped shapes
const originalGroup = ({ topic, partitionMetadata, messages, partitioner }: any) => {
  if (partitionMetadata.length === 0) return {};
  // biome-ignore lint/suspicious/noExplicitAny: as above
  return messages.reduce((result: any, message: any) => {
    const partition = partitioner({ topic, partitionMetadata, message });
    const current = result[partition] || [];
    return Object.assign(result, { [partition]: [...current, message] });
  }, {});
};

// kafkajs 2.2.4, src/protocol/recordBatch/record/v0/index.js (with kdr's earlier null-header fix)
// biome-ignore lint/suspicious/noExplicitAny: as above
const originalRecord = ({ offsetDelta = 0, timestampDelta = 0, key, value, headerList }: any) => {
  let headerSize = Encoder.sizeOfVarInt(headerList.length);
  for (const h of headerList) {
    const keySize = Buffer.byteLength(h.key);
    headerSize += Encoder.sizeOfVarInt(keySize) + keySize;
    headerSize +=
      h.value === null ? Encoder.sizeOfVarInt(-1) : Encoder.sizeOfVarInt(h.value.length) + h.value.length;
  }
  const sizeOfBody =
    1 +
    Encoder.sizeOfVarLong(timestampDelta) +
    Encoder.sizeOfVarInt(offsetDelta) +
    Encoder.sizeOfVarIntBytes(key) +
    Encoder.sizeOfVarIntBytes(value) +
    headerSize;
  return new Encoder()
    .writeVarInt(sizeOfBody)
    .writeInt8(0)
    .writeVarLong(timestampDelta)
    .writeVarInt(offsetDelta)
    .writeVarIntBytes(key)
    .writeVarIntBytes(value)
    .writeVarIntArray(headerList.map(Header));
};

function time(fn: () => void, runs = 7): number {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return median(samples);
}

export function benchHotpath(records = 8000) {
  const messages = Array.from({ length: records }, (_, i) => ({
    partition: 0,
    key: Buffer.from(`key-${i}`),
    value: Buffer.alloc(100, i),
    headerList: [
      { key: 'kdr.src', value: Buffer.from(`primary/orders/0/${i}`) },
      { key: 'kdr.origin', value: Buffer.from('primary') },
    ],
  }));
  const partitionMetadata = [{ partitionId: 0 }];
  const partitioner = () => 0;
  const group = (impl: typeof originalGroup) => () =>
    impl({ topic: 't', partitionMetadata, messages, partitioner });
  const encode = (impl: typeof originalRecord) => () => {
    for (let i = 0; i < messages.length; i++) impl({ ...messages[i], offsetDelta: i, timestampDelta: 0 });
  };
  // Same bytes either way.
  const a = originalRecord({ ...messages[7], offsetDelta: 7 }).buffer as Buffer;
  const b = patchedRecord({ ...messages[7], offsetDelta: 7 }).buffer as Buffer;
  if (!a.equals(b)) throw new Error('the patched record encoder writes different bytes');
  const result = {
    records,
    groupBeforeMs: time(group(originalGroup)),
    groupAfterMs: time(group(patchedGroup)),
    encodeBeforeMs: time(encode(originalRecord)),
    encodeAfterMs: time(encode(patchedRecord)),
  };
  return {
    ...result,
    groupSpeedup: result.groupBeforeMs / result.groupAfterMs,
    encodeSpeedup: result.encodeBeforeMs / result.encodeAfterMs,
  };
}

if (import.meta.url === `file://${process.argv[1]}`)
  process.stdout.write(`${JSON.stringify(benchHotpath(), null, 2)}\n`);
