import { afterAll, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { originOfRestored } from '../../../src/core/restore.ts';
import { silentLogger } from '../../../src/logger.ts';
import { snapshotDeps } from '../../../src/operations.ts';
import { createRuntime } from '../../../src/runtime.ts';
import { runSnapshot } from '../../../src/services/snapshot.ts';
import { createTopics, readWithKcat, uniqueName } from '../../helpers/lab.ts';
import { produce } from '../../helpers/records.ts';

/**
 * The invoked restore function with a time budget far too small for the work: each invocation saves its
 * progress and returns "in-progress" (in AWS it would invoke itself again), until the restore completes,
 * exactly.
 */

const prefix = uniqueName('fnrestore');
const keys = [
  'KDR_PAIR',
  'KDR_TOPICS',
  'KDR_SNAPSHOT_PREFIX',
  'KDR_SNAPSHOT_SEGMENT_BYTES',
  'KDR_MIRROR_MAX_TRANSACTION_RECORDS',
];
const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
Object.assign(process.env, {
  KDR_PAIR: uniqueName('fnrestore-pair'),
  KDR_TOPICS: `${prefix}-.*`,
  KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
  KDR_SNAPSHOT_SEGMENT_BYTES: '20000',
  KDR_MIRROR_MAX_TRANSACTION_RECORDS: '100',
});
const rt = createRuntime(loadConfig(), silentLogger);
afterAll(async () => {
  await rt.close();
  // The handler reads its configuration from the environment; leave it as it was for other files.
  for (const key of keys) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
});

it('completes a restore across several invocations with a tiny time budget', {
  timeout: 300_000,
}, async () => {
  const topic = `${prefix}-t`;
  await createTopics('primary', [{ topic, numPartitions: 2 }]);
  // Recent timestamps: records older than the topic's retention.ms (7 days) are deleted by the broker's
  // retention check (every 5 s in the lab), from the source or from the restored topic.
  const base = Date.now() - 60_000;
  for (let p = 0; p < 2; p++) {
    await produce(
      'primary',
      topic,
      p,
      Array.from({ length: 500 }, (_, i) => ({
        key: Buffer.from(`k${i}`),
        value: Buffer.alloc(100, i),
        headers: [{ key: 'h', value: null }],
        timestamp: base + i,
      })),
    );
  }
  const snapshot = await runSnapshot(snapshotDeps(rt, 'primary'));
  if (snapshot.status !== 'complete') throw new Error('snapshot incomplete');
  const snapshotId = snapshot.manifest.snapshotId;

  const { handler } = await import('../../../functions/restore.ts');
  // 15 s left, all of which the handler keeps to save and return: each invocation does the one unit of
  // work (a segment checked, a transaction written) every run is guaranteed, whatever the machine's speed.
  const context = { getRemainingTimeInMillis: () => 15_000 };
  const event = { snapshotId, target: 'standby', topicPrefix: 'fn.' };
  const results: {
    status: string;
    phase?: string;
    records?: number;
    verifiedSegments?: number;
    verification?: unknown;
  }[] = [];
  for (let i = 0; i < 200; i++) {
    const last = results.at(-1);
    // As the function re-invokes itself: how far the check got, and what it counted so far.
    const payload =
      last?.verifiedSegments !== undefined
        ? { ...event, verifiedSegments: last.verifiedSegments, verification: last.verification }
        : event;
    const result = (await handler(payload, context)) as (typeof results)[number];
    results.push(result);
    if (result.status === 'complete') break;
  }
  const final = results.at(-1)!;
  expect(final).toMatchObject({ status: 'complete', records: 1000 });
  const phases = new Set(results.filter((r) => r.status === 'in-progress').map((r) => r.phase));
  expect(phases).toEqual(new Set(['verify', 'write']));
  expect(results.filter((r) => r.status === 'in-progress').length).toBeGreaterThanOrEqual(5);

  const restored = await readWithKcat('standby', `fn.${topic}`);
  expect(restored).toHaveLength(1000);
  for (const p of [0, 1]) {
    const offsets = restored
      .filter((r) => r.partition === p)
      .map((r) => originOfRestored(r.headers.map(([key, value]) => ({ key, value })))!.offset);
    expect(offsets).toEqual(Array.from({ length: 500 }, (_, i) => i));
    // Original timestamps kept.
    expect(restored.filter((r) => r.partition === p).map((r) => r.timestamp)).toEqual(
      Array.from({ length: 500 }, (_, i) => base + i),
    );
  }
});

it('rejects a malformed request before reading anything', async () => {
  const { handler } = await import('../../../functions/restore.ts');
  await expect(handler({ snapshotId: 'x', target: 'standby' })).rejects.toThrow(
    'malformed restore request at snapshotId: expected a snapshot id such as 20261124T193000Z-3fa9',
  );
  await expect(handler({ at: '2026-01-01T00:00:00Z', mode: 'overwrite' })).rejects.toThrow(
    'malformed restore request at mode: expected "new", "append" or "replace", got "overwrite"',
  );
  await expect(handler('{not json')).rejects.toThrow('malformed restore request: not JSON');
});

it('writes only to the pair, or to brokers the deployment allowed (KDR_RESTORE_ALLOWED_BROKERS)', async () => {
  const { handler } = await import('../../../functions/restore.ts');
  // Refused before any snapshot is read or any broker is contacted (10.255.255.1 would not answer).
  await expect(handler({ snapshotId: '20261124T193000Z-3fa9', target: '10.255.255.1:9092' })).rejects.toThrow(
    'restore target 10.255.255.1:9092 is outside the pair: the restore function writes to primary, standby or brokers listed in KDR_RESTORE_ALLOWED_BROKERS (none); not allowed: 10.255.255.1:9092',
  );
  const { checkRestoreTargetAllowed } = await import('../../../src/operations.ts');
  const allowing = { ...loadConfig(), restoreAllowedBrokers: ['dr-1.internal:9092', 'dr-2.internal:9092'] };
  expect(() => checkRestoreTargetAllowed(allowing, 'dr-1.internal:9092,dr-2.internal:9092')).not.toThrow();
  expect(() => checkRestoreTargetAllowed(allowing, 'standby')).not.toThrow();
  expect(() => checkRestoreTargetAllowed(allowing, 'dr-1.internal:9092,evil.example:9092')).toThrow(
    'not allowed: evil.example:9092',
  );
});
