import { describe, expect, it } from 'vitest';
import { FETCH_FLOOR, fetchLimits } from '../../../../src/adapters/kafka/groupMirror.ts';

describe('fetchLimits', () => {
  it('keeps the defaults for topics with the usual 1 MiB limit or unknown limits', () => {
    expect(fetchLimits(1_048_588)).toEqual({
      maxBytesPerPartition: 4 * 1024 * 1024,
      maxBytes: 32 * 1024 * 1024,
    });
    expect(fetchLimits(undefined)).toEqual({
      maxBytesPerPartition: FETCH_FLOOR.perPartition,
      maxBytes: FETCH_FLOOR.total,
    });
  });

  it('never lets a partition limit fall below the largest batch a topic can hold', () => {
    const largest = 10 * 1024 * 1024;
    const limits = fetchLimits(largest);
    expect(limits.maxBytesPerPartition).toBe(largest);
    // A full batch still fits after an earlier partition's share of the response.
    expect(limits.maxBytes).toBeGreaterThanOrEqual(2 * largest);
  });
});
