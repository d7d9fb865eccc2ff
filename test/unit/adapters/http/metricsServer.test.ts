import { describe, expect, it } from 'vitest';
import { MetricsServer } from '../../../../src/adapters/http/metricsServer.ts';
import { createLogger } from '../../../../src/logger.ts';

describe('MetricsServer', () => {
  it('serves each partition topic generation and the offsets the source deleted before they were mirrored', async () => {
    const server = new MetricsServer(
      async () => ({
        pair: 'p',
        state: 'MIRRORING',
        epoch: 3,
        checkpointAgeSeconds: null,
        snapshotAgeSeconds: null,
        partitions: [
          {
            topic: 't',
            partition: 0,
            lagOffsets: 0,
            lastMirroredAgeSeconds: 1,
            generation: 2,
            gaps: [{ count: 50 }, { count: 7 }],
          },
          { topic: 'u', partition: 1, lagOffsets: 4, lastMirroredAgeSeconds: null },
        ],
      }),
      createLogger('error'),
    );
    const text = await server.registry.metrics();
    expect(text).toContain('kdr_topic_generation{topic="t",partition="0"} 2');
    expect(text).toContain('kdr_topic_generation{topic="u",partition="1"} 1');
    expect(text).toContain('kdr_gap_offsets{topic="t",partition="0"} 57');
    expect(text).toContain('kdr_gap_offsets{topic="u",partition="1"} 0');
  });
});
