import { describe, expect, it } from 'vitest';
import type { PartitionObservation } from '../../../src/ports/stateStore.ts';
import { unmirroredOffsets } from '../../../src/services/checkpoint.ts';

const observation = (o: Partial<PartitionObservation>): PartitionObservation => ({
  topic: 't',
  partition: 0,
  endOffset: 100,
  lastMirrored: 9,
  firstUnmirroredTimestamp: null,
  observedAt: 0,
  ...o,
});

describe('unmirroredOffsets (the checkpoint function lag metric)', () => {
  it('counts from the first unmirrored offset, never a gap nor what holds only markers', () => {
    expect(unmirroredOffsets(observation({}))).toBe(90);
    const gap = { topic: 't', partition: 0, from: 10, to: 60, count: 50, seenAt: 0 };
    expect(unmirroredOffsets(observation({ gap }))).toBe(40);
    expect(unmirroredOffsets(observation({ markersOnlyTo: 100 }))).toBe(0);
    expect(unmirroredOffsets(observation({ lastMirrored: null, endOffset: 5 }))).toBe(5);
    expect(unmirroredOffsets(observation({ lastMirrored: 99 }))).toBe(0);
  });
});
