import { describe, expect, it } from 'vitest';
import { planMirror } from '../../../src/core/mirrorPlan.ts';
import { lastHeader, parseSrc } from '../../../src/core/provenance.ts';
import type { SourceRecord } from '../../../src/core/records.ts';

const source = { topic: 'orders', partition: 3 };
const limits = { maxTransactionRecords: 1000, maxRequestBytes: 1_000_000 };

function record(offset: number, extra: Partial<SourceRecord> = {}): SourceRecord {
  return {
    offset,
    timestamp: 1_700_000_000_000 + offset,
    timestampType: 'CreateTime',
    key: Buffer.from(`k${offset}`),
    value: Buffer.from(`v${offset}`),
    headers: [],
    ...extra,
  };
}

const plan = (records: SourceRecord[], lastMirrored: number | null, overrides = {}) =>
  planMirror({
    source,
    records,
    lastMirrored,
    sourceAlias: 'primary',
    targetAlias: 'standby',
    limits,
    ...overrides,
  });

describe('planMirror', () => {
  it('skips what the standby already has: redelivered and overlapping batches', () => {
    const result = plan([record(5), record(6), record(7), record(8)], 6);
    expect(result.alreadyMirrored).toBe(2);
    expect(result.transactions).toHaveLength(1);
    expect(result.transactions[0]!.requests.flat().map((r) => r.sourceOffset)).toEqual([7, 8]);
  });

  it('produces nothing for a batch that was fully mirrored', () => {
    const result = plan([record(1), record(2)], 2);
    expect(result.transactions).toEqual([]);
    expect(result.alreadyMirrored).toBe(2);
    expect(result.lastOffset).toBe(2);
  });

  it('sorts and drops a record delivered twice in one batch', () => {
    const result = plan([record(3), record(1), record(3), record(2)], null);
    expect(result.transactions[0]!.requests.flat().map((r) => r.sourceOffset)).toEqual([1, 2, 3]);
  });

  it('keeps key, value, timestamp and headers, and appends provenance', () => {
    const headers = [
      { key: 'a', value: Buffer.from([0, 255]) },
      { key: 'n', value: null },
      { key: 'a', value: Buffer.alloc(0) },
    ];
    const r = record(42, { key: null, value: null, headers, timestamp: 0 });
    const out = plan([r], null).transactions[0]!.requests[0]![0]!;
    expect(out.key).toBeNull();
    expect(out.value).toBeNull();
    expect(out.timestamp).toBe(0);
    expect(out.headers.slice(0, 3)).toEqual(headers);
    expect(parseSrc(lastHeader(out.headers, 'kdr.src'))).toEqual({
      cluster: 'primary',
      topic: 'orders',
      partition: 3,
      offset: 42,
    });
    expect(lastHeader(out.headers, 'kdr.origin')?.toString()).toBe('primary');
  });

  it('skips only proven copies of the target: a kdr.origin header alone proves nothing', () => {
    // An application that forwarded a consumed record's headers, and a real copy of a standby record.
    const forwarded = record(1, { headers: [{ key: 'kdr.origin', value: Buffer.from('standby') }] });
    const proven = record(2, { headers: [{ key: 'kdr.origin', value: Buffer.from('standby') }] });
    const result = plan([forwarded, proven, record(3)], null, { copiesFromTarget: new Set([2]) });
    expect(result.originIsTarget).toBe(1);
    const out = result.transactions[0]!.requests.flat();
    expect(out.map((r) => r.sourceOffset)).toEqual([1, 3]);
    // The copy says where it was read from, not what a forwarded header claimed.
    expect(lastHeader(out[0]!.headers, 'kdr.origin')?.toString()).toBe('primary');
  });

  it('cuts transactions at the byte limit too, a bigger record alone', () => {
    const records = [
      record(0, { value: Buffer.alloc(300) }),
      record(1, { value: Buffer.alloc(300) }),
      record(2, { value: Buffer.alloc(2000) }),
      record(3),
    ];
    const result = plan(records, null, {
      limits: { maxTransactionRecords: 100, maxRequestBytes: 10_000, maxTransactionBytes: 1000 },
    });
    expect(result.transactions.map((t) => [t.firstSource, t.lastSource])).toEqual([
      [0, 1],
      [2, 2],
      [3, 3],
    ]);
  });

  it('cuts transactions at the record limit and requests at the byte limit', () => {
    const records = Array.from({ length: 25 }, (_, i) => record(i, { value: Buffer.alloc(100) }));
    const result = plan(records, null, { limits: { maxTransactionRecords: 10, maxRequestBytes: 600 } });
    expect(result.transactions.map((t) => t.records)).toEqual([10, 10, 5]);
    expect(result.transactions.map((t) => [t.firstSource, t.lastSource])).toEqual([
      [0, 9],
      [10, 19],
      [20, 24],
    ]);
    for (const t of result.transactions) {
      for (const request of t.requests) expect(request.length).toBeLessThanOrEqual(3);
      expect(t.requests.flat()).toHaveLength(t.records);
    }
  });

  it('puts a record bigger than the request limit alone in its request', () => {
    const result = plan([record(0), record(1, { value: Buffer.alloc(5000) }), record(2)], null, {
      limits: { maxTransactionRecords: 100, maxRequestBytes: 1000 },
    });
    expect(result.transactions[0]!.requests.map((r) => r.map((x) => x.sourceOffset))).toEqual([
      [0],
      [1],
      [2],
    ]);
  });
});
