import { afterAll, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { decodeSegment } from '../../../src/core/segment.ts';
import type { SnapshotManifest } from '../../../src/core/snapshot.ts';
import { silentLogger } from '../../../src/logger.ts';
import { createRuntime } from '../../../src/runtime.ts';
import { createTopics, uniqueName } from '../../helpers/lab.ts';
import { produce } from '../../helpers/records.ts';

/**
 * The scheduled snapshot function with a time budget far too small for the work: each invocation saves
 * its progress and the next continues, until the snapshot completes, exactly.
 */

const prefix = uniqueName('fnsnap');
const saved = { ...process.env };
Object.assign(process.env, {
  KDR_PAIR: uniqueName('fnsnap-pair'),
  KDR_TOPICS: `${prefix}-.*`,
  KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
  KDR_SNAPSHOT_SEGMENT_BYTES: '40000',
});
const rt = createRuntime(loadConfig(), silentLogger);
afterAll(async () => {
  await rt.close();
  // The handler reads its configuration from the environment; leave it as it was for other files.
  for (const key of ['KDR_PAIR', 'KDR_TOPICS', 'KDR_SNAPSHOT_PREFIX', 'KDR_SNAPSHOT_SEGMENT_BYTES']) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
});

it('completes a snapshot across several invocations with a tiny time budget', {
  timeout: 300_000,
}, async () => {
  const topic = `${prefix}-t`;
  await createTopics('primary', [{ topic, numPartitions: 2 }]);
  for (let p = 0; p < 2; p++) {
    await produce(
      'primary',
      topic,
      p,
      Array.from({ length: 3000 }, (_, i) => ({
        key: Buffer.from(`k${i}`),
        value: Buffer.alloc(400, i),
        headers: [],
        timestamp: Date.now(),
      })),
    );
  }
  const { handler } = await import('../../../functions/snapshot.ts');
  // 11 s left, of which the handler keeps 10 s to save and return and the service 1 s more: no time at
  // all, so each invocation writes the one segment every run is guaranteed, whatever the machine's speed.
  const context = { getRemainingTimeInMillis: () => 11_000 };
  const results: { status: string; snapshotId?: string; records?: number }[] = [];
  for (let i = 0; i < 200; i++) {
    const result = (await handler({ source: 'aws.events', 'detail-type': 'Scheduled Event' }, context)) as {
      status: string;
      snapshotId: string;
      records: number;
    };
    results.push(result);
    if (result.status === 'complete') break;
  }
  const final = results.at(-1)!;
  expect(final.status).toBe('complete');
  // About 96 records of 437 bytes per 40 kB segment: 32 segments per partition, one to three per run.
  expect(results.filter((r) => r.status === 'in-progress').length).toBeGreaterThanOrEqual(10);
  expect(new Set(results.map((r) => r.snapshotId)).size).toBe(1);
  expect(final.records).toBe(6000);
  const manifest: SnapshotManifest = JSON.parse(
    (await rt.objectStore.get(`test/${prefix}/manifests/${final.snapshotId}.json`)).toString(),
  );
  const offsets = new Map<number, number[]>();
  for (const s of manifest.segments) {
    for (const r of await decodeSegment(await rt.objectStore.get(s.key), s.sha256))
      offsets.set(s.partition, [...(offsets.get(s.partition) ?? []), r.offset]);
  }
  for (let p = 0; p < 2; p++) expect(offsets.get(p)).toEqual(Array.from({ length: 3000 }, (_, i) => i));
});

it('rejects a request for an unknown cluster', async () => {
  const { handler } = await import('../../../functions/snapshot.ts');
  await expect(handler({ cluster: 'tertiary' })).rejects.toThrow(
    'malformed snapshot request at cluster: expected "primary" or "standby", got "tertiary"',
  );
});
