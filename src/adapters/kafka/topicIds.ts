import KafkajsDecoder from 'kafkajs/src/protocol/decoder.js';
import KafkajsEncoder from 'kafkajs/src/protocol/encoder.js';
import { KafkaError } from '../../errors.ts';
import type { KafkajsCluster } from './cluster.ts';

/**
 * Topic ids (KIP-516), which kafkajs 2.2.4 cannot read: its Metadata request stops at v6, and ids came
 * with v10. kdr sends Metadata v12 itself (a flexible version: compact strings and arrays, tagged
 * fields) through kafkajs's connection, with kafkajs's own encoder and decoder, as kafkajs does for its
 * other flexible requests. Only names and ids are decoded; errors per topic are reported.
 */

interface Encoder {
  writeUVarInt(n: number): Encoder;
  writeUVarIntBytes(value?: Buffer | null): Encoder;
  writeUVarIntString(value: string | null): Encoder;
  writeUVarIntArray(array: Encoder[] | null, type?: 'object'): Encoder;
  writeBoolean(value: boolean): Encoder;
  writeBuffer(value: Buffer): Encoder;
  buffer: Buffer;
}
interface Decoder {
  readInt8(): number;
  readInt16(): number;
  readInt32(): number;
  readBoolean(): boolean;
  readBytes(length: number): Buffer;
  readUVarIntString(): string | null;
  readUVarIntArray<T>(reader: (d: Decoder) => T): T[] | null;
  readTaggedFields(): unknown;
}
const Encoder = KafkajsEncoder as unknown as new () => Encoder;
const Decoder = KafkajsDecoder as unknown as new (buffer: Buffer) => Decoder;

const METADATA_API_KEY = 3;
const METADATA_VERSION = 12;
const ZERO_UUID = Buffer.alloc(16);

/** Kafka prints a Uuid as URL-safe base64 without padding (Uuid.toString). */
export const uuidString = (bytes: Buffer): string => bytes.toString('base64url');

/** Metadata v12 request body (after kafkajs's v1 request header): the header's tagged fields, then the body. */
export function encodeMetadataV12(topics: readonly string[]): Buffer {
  const encoder = new Encoder()
    .writeUVarIntBytes() // request header v2: no tagged fields
    .writeUVarIntArray(
      topics.map((name) => new Encoder().writeBuffer(ZERO_UUID).writeUVarIntString(name).writeUVarIntBytes()),
      'object',
    )
    .writeBoolean(false) // allow_auto_topic_creation
    .writeBoolean(false) // include_topic_authorized_operations
    .writeUVarIntBytes();
  return encoder.buffer;
}

export interface TopicIdResult {
  name: string;
  topicId: string | null;
  errorCode: number;
}

/** Metadata v12 response, after kafkajs took the correlation id off: names, ids and error codes. */
export function decodeMetadataV12(payload: Buffer): TopicIdResult[] {
  const d = new Decoder(payload);
  d.readTaggedFields(); // response header v1
  d.readInt32(); // throttle_time_ms
  d.readUVarIntArray((b) => {
    b.readInt32(); // node_id
    b.readUVarIntString(); // host
    b.readInt32(); // port
    b.readUVarIntString(); // rack
    b.readTaggedFields();
    return null;
  });
  d.readUVarIntString(); // cluster_id
  d.readInt32(); // controller_id
  const topics =
    d.readUVarIntArray((t) => {
      const errorCode = t.readInt16();
      const name = t.readUVarIntString();
      const id = t.readBytes(16);
      t.readBoolean(); // is_internal
      t.readUVarIntArray((p) => {
        p.readInt16();
        p.readInt32();
        p.readInt32();
        p.readInt32();
        for (let i = 0; i < 3; i++) p.readUVarIntArray((r) => r.readInt32());
        p.readTaggedFields();
        return null;
      });
      t.readInt32(); // topic_authorized_operations
      t.readTaggedFields();
      return { name: name ?? '', topicId: id.equals(ZERO_UUID) ? null : uuidString(id), errorCode };
    }) ?? [];
  d.readTaggedFields();
  return topics;
}

interface RawBroker {
  connectionPool: {
    send(request: {
      request: { apiKey: number; apiVersion: number; apiName: string; encode: () => Promise<unknown> };
      response: { decode: (payload: Buffer) => Promise<unknown>; parse: (data: unknown) => Promise<unknown> };
    }): Promise<unknown>;
  };
}

/** Topic name → topic id, from any broker of the cluster (a connected kafkajs cluster). */
export async function fetchTopicIds(
  cluster: KafkajsCluster,
  topics: readonly string[],
): Promise<Map<string, string>> {
  if (topics.length === 0) return new Map();
  const pool = (cluster as unknown as { brokerPool: { seedBroker?: RawBroker } }).brokerPool;
  const broker = pool.seedBroker;
  if (!broker) throw new KafkaError('KAFKA_UNAVAILABLE', 'not connected to the cluster (no seed broker)');
  const results = (await broker.connectionPool.send({
    request: {
      apiKey: METADATA_API_KEY,
      apiVersion: METADATA_VERSION,
      apiName: 'Metadata',
      encode: async () => {
        const encoder = new Encoder();
        encoder.writeBuffer(encodeMetadataV12(topics));
        return encoder;
      },
    },
    response: { decode: async (payload) => decodeMetadataV12(payload), parse: async (data) => data },
  })) as TopicIdResult[];
  const ids = new Map<string, string>();
  for (const r of results) if (r.errorCode === 0 && r.topicId) ids.set(r.name, r.topicId);
  return ids;
}
