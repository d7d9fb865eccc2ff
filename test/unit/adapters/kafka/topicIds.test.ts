import KafkajsEncoder from 'kafkajs/src/protocol/encoder.js';
import { describe, expect, it } from 'vitest';
import { decodeMetadataV12, encodeMetadataV12, uuidString } from '../../../../src/adapters/kafka/topicIds.ts';

/** Metadata v12 (flexible version) as kdr encodes and decodes it; the lab test compares ids with Kafka's tool. */

// biome-ignore lint/suspicious/noExplicitAny: kafkajs's encoder is untyped
const Encoder = KafkajsEncoder as any;

describe('Metadata v12', () => {
  it('encodes names with zero ids, no auto-creation and empty tagged fields', () => {
    expect([...encodeMetadataV12(['ab'])]).toEqual([
      0, // request header tagged fields
      2, // compact array: 1 topic
      ...Array(16).fill(0), // topic_id: zero
      3, // compact string length + 1
      0x61,
      0x62,
      0, // topic tagged fields
      0, // allow_auto_topic_creation
      0, // include_topic_authorized_operations
      0, // tagged fields
    ]);
  });

  it('decodes names, ids and errors, skipping brokers and partitions', () => {
    const id = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
    const partition = new Encoder()
      .writeInt16(0)
      .writeInt32(0)
      .writeInt32(1)
      .writeInt32(5)
      .writeUVarIntArray([new Encoder().writeInt32(1)], 'object')
      .writeUVarIntArray([new Encoder().writeInt32(1)], 'object')
      .writeUVarIntArray([], 'object')
      .writeUVarIntBytes();
    const topic = (error: number, name: string, uuid: Buffer) =>
      new Encoder()
        .writeInt16(error)
        .writeUVarIntString(name)
        .writeBuffer(uuid)
        .writeBoolean(false)
        .writeUVarIntArray([partition], 'object')
        .writeInt32(-2147483648)
        .writeUVarIntBytes();
    const payload = new Encoder()
      .writeUVarIntBytes() // response header tagged fields
      .writeInt32(0)
      .writeUVarIntArray(
        [
          new Encoder()
            .writeInt32(1)
            .writeUVarIntString('127.0.0.1')
            .writeInt32(19092)
            .writeUVarIntString(null)
            .writeUVarIntBytes(),
        ],
        'object',
      )
      .writeUVarIntString('cluster-id')
      .writeInt32(1)
      .writeUVarIntArray([topic(0, 'orders', id), topic(3, 'missing', Buffer.alloc(16))], 'object')
      .writeUVarIntBytes().buffer;
    expect(decodeMetadataV12(payload)).toEqual([
      { name: 'orders', topicId: uuidString(id), errorCode: 0 },
      { name: 'missing', topicId: null, errorCode: 3 },
    ]);
    expect(uuidString(id)).toBe('ASNFZ4mrze8BI0VniavN7w');
  });
});
