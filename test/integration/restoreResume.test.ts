import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import { DynamoDBRestoreStore } from '../../src/adapters/dynamodb/restoreStore.ts';
import { loadConfig } from '../../src/config.ts';
import { originOfRestored, RESTORE_HEADER, restoreId } from '../../src/core/restore.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import type { RestoreProgress } from '../../src/services/restore.ts';
import { KDR_BIN, runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  config,
  createTopics,
  eventually,
  type KcatRecord,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import { canonical, produce } from '../helpers/records.ts';

/**
 * A restore killed (SIGKILL of its process group) in each of its phases, then run again with the same
 * command: it completes, every snapshot record is on the target exactly once and in order, and every group
 * resumes at the record it had committed. Also: a restore resumed after the target's log start moved.
 */

const PHASES = [
  'plan',
  'verify',
  'safety-snapshot',
  'prepare-topics',
  'write',
  'groups',
  'complete',
] as const;
const PER_PARTITION = 200;
const COMMITTED: Record<string, number[]> = { g0: [0, 0, 0], g1: [50, 120, 199], g2: [200, 10, 100] };

const runtimes: Runtime[] = [];
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children) killGroup(child);
  children.clear();
});
afterAll(async () => {
  await Promise.all(runtimes.map((rt) => rt.close()));
});

function killGroup(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

async function snapshotted(name: string) {
  const prefix = uniqueName(name);
  const env = {
    KDR_PAIR: uniqueName(`${name}-pair`),
    KDR_TOPICS: `${prefix}-.*`,
    KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
    // Many small segments and transactions: verify and write take long enough to be killed inside.
    KDR_SNAPSHOT_SEGMENT_BYTES: '1000',
    KDR_MIRROR_MAX_TRANSACTION_RECORDS: '10',
    // A safety snapshot killed with the restore holds the snapshot lease until it expires.
    KDR_SNAPSHOT_LEASE_MS: '5000',
  };
  const rt = createRuntime(loadConfig({ ...process.env, ...env }), silentLogger);
  runtimes.push(rt);
  const topic = `${prefix}-t`;
  await createTopics('primary', [{ topic, numPartitions: 3 }]);
  const now = Date.now();
  for (let p = 0; p < 3; p++)
    await produce(
      'primary',
      topic,
      p,
      Array.from({ length: PER_PARTITION }, (_, i) => ({
        key: Buffer.from(`k${p}-${i % 17}`),
        value: Buffer.from(`p${p}-v${i}`),
        headers: i % 3 === 0 ? [{ key: 'h', value: Buffer.from(String(i)) }] : [],
        timestamp: now - 1000 + i,
      })),
    );
  const groups = Object.fromEntries(Object.keys(COMMITTED).map((g) => [g, uniqueName(`${name}-${g}`)]));
  for (const [g, offsets] of Object.entries(COMMITTED))
    await commitGroupOffsets('primary', groups[g]!, topic, offsets);
  const atCut = await readWithKcat('primary', topic);
  const snap = await runKdr(['snapshot', '--json'], { env });
  expect(snap.exitCode, snap.stderr.slice(-2000)).toBe(0);
  const snapshotId = JSON.parse(snap.stdout).snapshotId as string;
  const store = new DynamoDBRestoreStore<RestoreProgress>(rt.aws.dynamodb, config.stateTable, env.KDR_PAIR);
  return { env, topic, groups, atCut, snapshotId, store };
}

/**
 * Starts `kdr restore` in its own process group. With `killAt`, SIGKILLs the group the moment a log line
 * says that phase started (synchronously in the handler, so the kill lands within milliseconds).
 */
function startRestore(env: Record<string, string>, args: string[], killAt?: string) {
  const child = spawn(process.execPath, [KDR_BIN, 'restore', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  children.add(child);
  const phases: string[] = [];
  let buffered = '';
  child.stderr!.on('data', (d) => {
    buffered += d;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      try {
        const entry = JSON.parse(line) as { message?: string; phase?: string };
        if (entry.message === 'restore phase' && entry.phase) {
          phases.push(entry.phase);
          if (entry.phase === killAt) killGroup(child);
        }
      } catch {
        // not a log line
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, phases, exited };
}

const originOf = (r: KcatRecord) => originOfRestored(r.headers.map(([key, value]) => ({ key, value })));
const plain = (r: KcatRecord) =>
  canonical({ ...r, headers: r.headers.filter(([k]) => k !== RESTORE_HEADER) });

/** Each target partition holds the snapshot's records of that partition from `from[p]` on, each once, in order. */
function expectRestored(restored: KcatRecord[], atCut: KcatRecord[], from: number[] = [0, 0, 0]) {
  for (let p = 0; p < 3; p++) {
    const got = restored.filter((r) => r.partition === p);
    const want = atCut.filter((r) => r.partition === p && r.offset >= from[p]!);
    expect(
      got.map((r) => originOf(r)?.offset),
      `partition ${p}`,
    ).toEqual(want.map((r) => r.offset));
    got.forEach((r, i) => {
      expect(plain(r).equals(canonical(want[i]!)), `partition ${p} record ${i}`).toBe(true);
    });
  }
}

/** Every group resumes at the record whose snapshot offset it had committed (or at the end). */
async function expectGroups(topic: string, groups: Record<string, string>, restored: KcatRecord[]) {
  for (const [g, committed] of Object.entries(COMMITTED)) {
    const offsets = await withAdmin('standby', (admin) =>
      admin.fetchOffsets({ groupId: groups[g]!, topics: [topic] }),
    );
    for (const { partition, offset } of offsets[0]!.partitions) {
      const next = restored.find((r) => r.partition === partition && r.offset >= Number(offset));
      if (committed[partition] === PER_PARTITION) expect(next, `${g} partition ${partition}`).toBeUndefined();
      else expect(next && originOf(next)?.offset, `${g} partition ${partition}`).toBe(committed[partition]);
    }
  }
}

describe('restore resumes', () => {
  it('killed in each phase, the same command completes it: no record lost or doubled, groups exact', {
    timeout: 300_000,
  }, async () => {
    const s = await snapshotted('rphase');
    const landings: string[] = [];
    for (const [i, phase] of PHASES.entries()) {
      const target = `k${i}.${s.topic}`;
      // replace, so that there is a safety snapshot to take: the target holds records of its own.
      await createTopics('standby', [{ topic: target, numPartitions: 3 }]);
      await produce('standby', target, 0, [
        { key: null, value: Buffer.from('junk'), headers: [], timestamp: Date.now() },
      ]);
      const args = [
        '--snapshot',
        s.snapshotId,
        '--target',
        'standby',
        '--topic-prefix',
        `k${i}.`,
        '--mode',
        'replace',
        '--yes',
      ];
      const id = restoreId({
        snapshotId: s.snapshotId,
        target: 'standby',
        mapping: new Map([[s.topic, target]]),
        mode: 'replace',
      });
      const run = startRestore(s.env, args, phase === 'write' ? undefined : phase);
      let exited = false;
      void run.exited.then(() => {
        exited = true;
      });
      await eventually(
        `the restore reached phase ${phase}`,
        () => exited || run.phases.includes(phase),
        60_000,
      );
      expect(run.phases, `phases seen: ${run.phases.join(', ')}`).toContain(phase);
      // In the write phase: once it has saved progress, i.e. with some transactions committed.
      if (phase === 'write')
        await eventually(
          'the restore wrote something',
          async () => ((await s.store.get(id))?.records ?? 0) > 0,
          60_000,
        );
      killGroup(run.child);
      await run.exited;
      children.delete(run.child);
      expect(run.child.signalCode, `the run ended by itself in phase ${phase}`).toBe('SIGKILL');
      // plan and verify save nothing; from safety-snapshot on the saved phase says where the kill landed
      // (at or after the phase it was aimed at: a phase may end in the milliseconds a kill takes).
      const saved = await s.store.get(id);
      const landed = saved?.phase ?? 'verify';
      expect(PHASES.indexOf(landed), `killed in ${phase}, saved ${saved?.phase}`).toBeGreaterThanOrEqual(
        Math.max(PHASES.indexOf(phase), 1),
      );
      landings.push(
        `${phase}→${saved ? `${saved.phase} (${saved.records} records saved)` : 'nothing saved'}`,
      );

      const again = await runKdr(['restore', ...args, '--json'], { env: s.env });
      expect(again.exitCode, `${phase}: ${again.stderr.slice(-2000)}`).toBe(0);
      expect(JSON.parse(again.stdout), phase).toMatchObject({ records: 3 * PER_PARTITION });
      const restored = await readWithKcat('standby', target);
      expectRestored(restored, s.atCut);
      await expectGroups(target, s.groups, restored);
    }
    console.info(`kills: ${landings.join(', ')}`);
  });

  it('a restore resumed after the target log start moved (DeleteRecords) completes', {
    timeout: 180_000,
  }, async () => {
    const s = await snapshotted('rlogstart');
    const target = `ls.${s.topic}`;
    const args = ['--snapshot', s.snapshotId, '--target', 'standby', '--topic-prefix', 'ls.'];
    const id = restoreId({
      snapshotId: s.snapshotId,
      target: 'standby',
      mapping: new Map([[s.topic, target]]),
      mode: 'new',
    });
    const run = startRestore(s.env, args);
    await eventually(
      'the restore wrote 60 records',
      async () => ((await s.store.get(id))?.records ?? 0) >= 60,
      60_000,
    );
    killGroup(run.child);
    await run.exited;
    children.delete(run.child);
    // Everything written so far leaves the target: its log start moves to the high watermark.
    const moved = await withAdmin('standby', async (admin) => {
      await admin.fetchTopicMetadata({ topics: [target] });
      const offsets = await admin.fetchTopicOffsets(target);
      const partitions = offsets
        .filter((o) => Number(o.high) > 0)
        .map((o) => ({ partition: o.partition, offset: o.high }));
      await admin.deleteTopicRecords({ topic: target, partitions });
      return partitions;
    });
    expect(moved.length).toBeGreaterThan(0);
    const deleted = (await readWithKcat('standby', target)).length;
    expect(deleted).toBe(0);

    const again = await runKdr(['restore', ...args, '--json'], { env: s.env });
    expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
    const restored = await readWithKcat('standby', target);
    // What was left to write is there exactly once, right after what DeleteRecords removed.
    const from = [0, 1, 2].map((p) => {
      const first = restored.find((r) => r.partition === p);
      return first ? originOf(first)!.offset : PER_PARTITION;
    });
    expectRestored(restored, s.atCut, from);
    expect(from.some((f) => f > 0)).toBe(true);
    const report = JSON.parse(again.stdout);
    expect(report.records).toBe(3 * PER_PARTITION);
    expect(report.warnings.join('\n')).toContain('left the target log (retention or DeleteRecords)');
  });
});
