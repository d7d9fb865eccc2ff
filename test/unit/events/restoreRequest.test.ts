import { describe, expect, it } from 'vitest';
import { restoreRequestSchema, restoreWriteOptions } from '../../../src/events/restoreRequest.ts';

describe('restore payload', () => {
  const base = { snapshotId: '20261125T000000Z-abcd', target: 'standby' };

  it('takes retentionMs (-1: no limit) and restamp, as kdr restore --retention-ms and --restamp', () => {
    const parsed = restoreRequestSchema.parse({ ...base, retentionMs: 86_400_000, restamp: true });
    expect(restoreWriteOptions(parsed)).toEqual({ retentionMs: 86_400_000, restamp: true });
    expect(restoreWriteOptions(restoreRequestSchema.parse(base))).toEqual({ restamp: false });
    expect(restoreRequestSchema.parse({ ...base, retentionMs: -1 }).retentionMs).toBe(-1);
  });

  it('refuses a bad retentionMs, naming the value', () => {
    for (const [bad, message] of [
      [-2, 'expected retentionMs of -1 (no limit) or more, got -2'],
      [1.5, 'expected retentionMs as a whole number of milliseconds, got 1.5'],
      [
        '7d',
        'expected retentionMs (--retention-ms) as a whole number of milliseconds (-1: no limit), got "7d"',
      ],
    ] as const) {
      const result = restoreRequestSchema.safeParse({ ...base, retentionMs: bad });
      expect(result.success, String(bad)).toBe(false);
      expect(result.error?.issues[0]?.message, String(bad)).toBe(message);
    }
  });
});
