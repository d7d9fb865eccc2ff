import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import { KDR_BIN, runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, readWithKcat, uniqueName } from '../helpers/lab.ts';
import { fillPartitions, mirroredSourceOffsets } from '../helpers/records.ts';

/**
 * `kdr mirror --workers N`: N processes in the mirror's consumer group, started, watched and stopped
 * together. What matters: every record once on the standby whatever the group does, a signal stops all of
 * them, and a worker that dies stops the rest with its failure in the exit code.
 */

const PARTITIONS = [0, 1, 2, 3, 4, 5];
const value = (p: number, i: number) => `w${p}-${i}`;

function pairEnv(name: string) {
  return {
    KDR_PAIR: uniqueName(`${name}-pair`),
    KDR_MIRROR_GROUP_ID: uniqueName(`${name}-g`),
  };
}

/** Every partition of the standby copy holds the source's records once, in order. */
async function expectExactlyOnce(topic: string, count: number): Promise<void> {
  for (const p of PARTITIONS) {
    expect(await mirroredSourceOffsets(topic, p), `partition ${p}`).toEqual(
      Array.from({ length: count }, (_, i) => i),
    );
    const values = (await readWithKcat('standby', topic, { partition: p })).map((r) => r.value?.toString());
    expect(values, `partition ${p}`).toEqual(Array.from({ length: count }, (_, i) => value(p, i)));
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('kdr mirror --workers', () => {
  it('two workers mirror every record once and exit together when caught up', {
    timeout: 240_000,
  }, async () => {
    const topic = uniqueName('mw-caught');
    await createTopics('primary', [{ topic, numPartitions: PARTITIONS.length }]);
    await fillPartitions(topic, PARTITIONS, 1500, value);
    const result = await runKdr(
      ['mirror', '--topics', topic, '--until-caught-up', '--workers', '2', '--json'],
      {
        env: pairEnv('mw-caught'),
      },
    );
    expect(result.exitCode, result.stderr.slice(-3000)).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.failed).toBeNull();
    expect(summary.workers.map((w: { exitCode: number }) => w.exitCode)).toEqual([0, 0]);
    // Each record counted by the worker that wrote it, none by two.
    expect(summary.recordsMirrored).toBe(PARTITIONS.length * 1500);
    expect(summary.partitions.every((p: { lagOffsets: number }) => p.lagOffsets === 0)).toBe(true);
    expect(result.stderr).toContain('2 mirror workers started');
    await expectExactlyOnce(topic, 1500);
  });

  it('a signal stops every worker; a worker killed mid-way stops the others, and the next run doubles nothing', {
    timeout: 300_000,
  }, async () => {
    const topic = uniqueName('mw-kill');
    await createTopics('primary', [{ topic, numPartitions: PARTITIONS.length }]);
    const env = { ...process.env, ...pairEnv('mw-kill') };
    const start = () =>
      execa(process.execPath, [KDR_BIN, 'mirror', '--topics', topic, '--workers', '2'], {
        cwd: REPO_ROOT,
        env,
        reject: false,
        all: true,
      });
    const workerPids = async (parent: number) =>
      (await execa('pgrep', ['-P', String(parent)], { reject: false })).stdout
        .split('\n')
        .filter(Boolean)
        .map(Number);

    // SIGTERM to the parent: both workers stop, the parent exits 0.
    const first = start();
    await fillPartitions(topic, PARTITIONS, 500, value);
    await eventually('the workers mirrored the first records', async () => {
      // kcat fails until the standby topic exists
      const offsets = await Promise.all(PARTITIONS.map((p) => mirroredSourceOffsets(topic, p))).catch(
        () => [],
      );
      return offsets.length > 0 && offsets.every((o) => o.length === 500);
    });
    const pids = await workerPids(first.pid!);
    expect(pids).toHaveLength(2);
    first.kill('SIGTERM');
    const stopped = await first;
    expect(stopped.exitCode, stopped.all?.slice(-3000)).toBe(0);
    expect(stopped.all).toContain('stopping the mirror workers (SIGTERM)');
    expect(pids.filter(pidAlive)).toEqual([]);

    // A worker killed with SIGKILL while records flow: the other is stopped, the exit code says so.
    const second = start();
    await eventually('two workers run', async () => (await workerPids(second.pid!)).length === 2);
    const [victim] = await workerPids(second.pid!);
    const more = fillPartitions(topic, PARTITIONS, 1000, (p, i) => value(p, 500 + i));
    process.kill(victim!, 'SIGKILL');
    const failed = await second;
    await more;
    expect(failed.exitCode).not.toBe(0);
    expect(failed.all).toMatch(/mirror worker \d \(pid \d+\) exited with code \d+; the others were stopped/);

    // The parent SIGKILLed (no handler runs): its workers notice the closed channel and stop on their own.
    const third = start();
    await eventually('two workers run', async () => (await workerPids(third.pid!)).length === 2);
    const orphans = await workerPids(third.pid!);
    third.kill('SIGKILL');
    await third;
    await eventually('the orphaned workers stopped', async () => orphans.filter(pidAlive).length === 0);

    // A signal right after the start, before the workers are up: a clean stop, not a failure.
    const early = start();
    await eventually('two workers started', async () => (await workerPids(early.pid!)).length === 2);
    early.kill('SIGTERM');
    const earlyStop = await early;
    expect(earlyStop.exitCode, earlyStop.all?.slice(-3000)).toBe(0);

    // One plain run then finishes the job: every record once, whatever the killed worker had written.
    const rest = await runKdr(['mirror', '--topics', topic, '--until-caught-up', '--json'], { env });
    expect(rest.exitCode, rest.stderr.slice(-3000)).toBe(0);
    await expectExactlyOnce(topic, 1500);
  });

  it('rejects a bad --workers with the limit and the value given, before connecting', async () => {
    for (const bad of ['0', '65', 'two', '1.5']) {
      const result = await runKdr(['mirror', '--workers', bad], { env: { KDR_PAIR: 'unused' } });
      expect(result.exitCode, bad).toBe(2);
      expect(result.stderr).toContain(`expected --workers as a whole number from 1 to 64, got "${bad}"`);
    }
  });
});
