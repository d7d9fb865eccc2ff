import type { Header, SourceRecord } from '../../core/records.ts';
import { toOffset } from '../../core/records.ts';

/** A record as kafkajs decodes it (with the ordered headerList of kdr's kafkajs patch). */
export interface KafkajsRecord {
  offset: string;
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headerList?: { key: string; value: Buffer | null }[];
  batchContext?: { timestampType?: number };
}

export function fromKafkajs(raw: KafkajsRecord): SourceRecord {
  if (!raw.headerList)
    throw new Error('kafkajs is not patched (no headerList): run npm install to apply patches/');
  const headers: Header[] = raw.headerList.map((h) => ({ key: h.key, value: h.value }));
  return {
    offset: toOffset(raw.offset),
    timestamp: Number(raw.timestamp),
    timestampType: raw.batchContext?.timestampType === 1 ? 'LogAppendTime' : 'CreateTime',
    key: raw.key,
    value: raw.value,
    headers,
  };
}
