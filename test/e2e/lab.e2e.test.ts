import { mkdirSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { Lab } from '../../infra/local/lab.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { isAlive } from '../../infra/local/processes.ts';
import { runKdr } from '../helpers/cli.ts';

/**
 * The lab as an operator drives it: status, idempotent up, clear errors for a port conflict and for
 * missing prerequisites, a three-broker lab that kcat lists, and `down` leaving no process behind.
 */

const mainLab = labPaths();
const shared = { KDR_LAB_CACHE_DIR: mainLab.cache };
const scratch = mkdtempSync(path.join(os.tmpdir(), 'kdr-lab-e2e-'));

/** pids of processes whose command line mentions `marker`. */
async function processesMentioning(marker: string): Promise<number[]> {
  const { stdout } = await execa('pgrep', ['-f', '--', marker], { reject: false });
  return stdout
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => pid !== process.pid);
}

describe('kdr lab', () => {
  afterAll(async () => {
    // Nothing this file started may survive it, even when an assertion failed half-way.
    for (const dir of ['three', 'conflict', 'noprereq', 'kafkahome', 'slow'])
      await runKdr(['lab', 'down'], {
        env: { KDR_LAB_DIR: path.join(scratch, dir), ...shared, KDR_LAB_PORT_OFFSET: '1000' },
      });
  });

  it('status tells what runs, with ports and pids, as JSON', async () => {
    const result = await runKdr(['lab', 'status', '--json']);
    expect(result.exitCode).toBe(0);
    const status = JSON.parse(result.stdout);
    expect(status.up).toBe(true);
    expect(status.clusters.map((c: { bootstrap: string }) => c.bootstrap)).toEqual(
      expect.arrayContaining(['127.0.0.1:19092', '127.0.0.1:29092'].map((b) => expect.stringContaining(b))),
    );
    for (const p of status.processes) {
      expect(isAlive(p.pid)).toBe(true);
      expect(p.answering).toBe(true);
    }
    expect(status.processes.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['moto']));
  });

  it('up is idempotent: a second up keeps the same processes', async () => {
    const before = JSON.parse((await runKdr(['lab', 'status', '--json'])).stdout);
    const again = await runKdr(['lab', 'up', '--brokers', String(before.brokers), '--json']);
    expect(again.exitCode).toBe(0);
    const after = JSON.parse(again.stdout);
    expect(after.processes.map((p: { pid: number }) => p.pid)).toEqual(
      before.processes.map((p: { pid: number }) => p.pid),
    );
  });

  it('refuses to start over ports in use, naming each port and changing nothing', async () => {
    const dir = path.join(scratch, 'conflict');
    const result = await runKdr(['lab', 'up'], { env: { KDR_LAB_DIR: dir, ...shared } });
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toContain('port 19092 (primary-1 broker listener) is already in use');
    expect(result.stderr).toContain('port 4566 (moto (S3, DynamoDB)) is already in use');
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await processesMentioning(dir)).toEqual([]);
  });

  it('names every missing prerequisite with what to install, without a stack trace', async () => {
    const dir = path.join(scratch, 'noprereq');
    const bin = path.join(scratch, 'bin-node-only');
    mkdirSync(bin, { recursive: true });
    symlinkSync(process.execPath, path.join(bin, 'node'));
    const result = await runKdr(['lab', 'up'], {
      env: {
        KDR_LAB_DIR: dir,
        KDR_LAB_CACHE_DIR: path.join(dir, 'empty-cache'),
        PATH: bin,
        KAFKA_HOME: undefined,
      },
    });
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toContain('the lab needs java, mvn, python3 on PATH');
    expect(result.stderr).toContain('openjdk-17-jre-headless');
    expect(result.stderr).toContain('apt-get install maven');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('honours KAFKA_HOME: the brokers run from its libs/, and a KAFKA_HOME without Kafka is named', async () => {
    const home = path.join(scratch, 'kafka-home');
    mkdirSync(home, { recursive: true });
    symlinkSync(path.join(mainLab.kafkaCache, 'libs'), path.join(home, 'libs'));
    const dir = path.join(scratch, 'kafkahome');
    const env = { KDR_LAB_DIR: dir, KDR_LAB_PORT_OFFSET: '1000', ...shared, KAFKA_HOME: home };
    try {
      const up = await runKdr(['lab', 'up', '--json'], { env, timeoutMs: 300_000 });
      expect(up.exitCode, up.stderr).toBe(0);
      for (const p of JSON.parse(up.stdout).processes.filter((p: { role: string }) => p.role === 'broker')) {
        const commandLine = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').join(' ');
        expect(commandLine).toContain(path.join(home, 'libs'));
      }
    } finally {
      await runKdr(['lab', 'down'], { env });
    }

    const empty = path.join(scratch, 'not-kafka');
    mkdirSync(path.join(empty, 'libs'), { recursive: true });
    const refused = await runKdr(['lab', 'up'], { env: { ...env, KAFKA_HOME: empty } });
    expect(refused.exitCode).toBe(3);
    expect(refused.stderr).toContain(
      `KAFKA_HOME=${empty} is set but ${path.join(empty, 'libs')} holds no kafka_2.13-*.jar`,
    );
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    expect(await processesMentioning(dir)).toEqual([]);
  });

  it('names the process, its log and last lines when one does not come up in time, and stops the rest', async () => {
    const dir = path.join(scratch, 'slow');
    const lab = new Lab({ dir, portOffset: 1000, readyTimeoutMs: 1 });
    const error = (await lab.up(1).then(
      () => undefined,
      (e: unknown) => e,
    )) as Error;
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toMatch(
      /^\S+ \(pid \d+\) did not become ready within 0\.001s \(.+\); log \S+\.log, last lines:/,
    );
    expect(await processesMentioning(dir)).toEqual([]); // the lab's marker, -Dkdr.lab=<dir>, included
  });

  it('rejects a bad --brokers value', async () => {
    const result = await runKdr(['lab', 'up', '--brokers', '2']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('expected 1 or 3 brokers per cluster, got "2"');
  });

  it('--brokers 3 gives three brokers per cluster that kcat lists, and down stops them all', async () => {
    const dir = path.join(scratch, 'three');
    const env = { KDR_LAB_DIR: dir, KDR_LAB_PORT_OFFSET: '1000', ...shared };
    const up = await runKdr(['lab', 'up', '--brokers', '3', '--json'], { env, timeoutMs: 600_000 });
    expect(up.exitCode, up.stderr).toBe(0);
    const status = JSON.parse(up.stdout);
    expect(status.processes).toHaveLength(7);
    for (const [bootstrap, ports] of [
      ['127.0.0.1:20092', [20092, 20093, 20094]],
      ['127.0.0.1:30092', [30092, 30093, 30094]],
    ] as const) {
      const listing = await execa('kcat', ['-b', bootstrap, '-L', '-J'], { timeout: 60_000 });
      const brokers = (JSON.parse(listing.stdout).brokers as { name: string }[]).map((b) =>
        Number(b.name.split(':')[1]),
      );
      expect(brokers.sort()).toEqual([...ports]);
    }
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8'));
    const pids: number[] = state.processes.map((p: { pid: number }) => p.pid);

    const down = await runKdr(['lab', 'down', '--json'], { env });
    expect(down.exitCode).toBe(0);
    expect(JSON.parse(down.stdout).stopped).toHaveLength(7);
    expect(pids.filter(isAlive)).toEqual([]);
    expect(await processesMentioning(`-Dkdr.lab=${dir}`)).toEqual([]);
  });
});
