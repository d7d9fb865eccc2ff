import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { labPaths, REPO_ROOT } from '../../infra/local/paths.ts';
import { createKafka } from '../../src/adapters/kafka/client.ts';
import { loadConfig } from '../../src/config.ts';
import { runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, uniqueName } from '../helpers/lab.ts';

/**
 * `npm start` on a machine where no lab runs (a lab dir of its own, ports shifted by 2000): it brings the
 * lab up and mirrors continuously, picking up a topic created while it runs; Ctrl-C (SIGINT to the whole
 * foreground process group, as a terminal sends it) stops everything it started.
 */
it('npm start brings the lab up, mirrors new topics, and Ctrl-C leaves no process behind', {
  timeout: 420_000,
}, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-run-e2e-'));
  const env = {
    ...process.env,
    KDR_LAB_DIR: dir,
    KDR_LAB_PORT_OFFSET: '2000',
    KDR_LAB_CACHE_DIR: labPaths().cache,
    KDR_TOPIC_SYNC_INTERVAL_MS: '2000',
    KDR_CHECKPOINT_INTERVAL_MS: '2000',
    KDR_SNAPSHOT_INTERVAL_MS: '3000',
  };
  const config = loadConfig(env);
  const child = spawn('npm', ['start'], {
    cwd: REPO_ROOT,
    detached: true,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await eventually(
      'kdr run reports that it mirrors',
      () => output.includes('press Ctrl-C to stop'),
      300_000,
    );
    expect(output).toContain('127.0.0.1:21092');
    const { stdout } = await execa('pgrep', ['-f', '--', `-Dkdr.lab=${dir}`], { reject: false });
    expect(stdout.split('\n').filter(Boolean)).toHaveLength(3); // primary and standby brokers, moto

    // A topic created while kdr run runs is found and mirrored.
    const topic = uniqueName('run-new');
    // kdr's admin adapter waits until the new topic's metadata reached every broker (kafkajs's
    // createTopics can fail with UNKNOWN_TOPIC_OR_PARTITION right after a KRaft create).
    await createTopics('primary', [{ topic, numPartitions: 2 }], config);
    const producer = createKafka(config.primary, 'kdr-test').producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })),
    });
    await producer.disconnect();
    await eventually(
      'the new topic reached the standby',
      async () => {
        const read = await execa(
          'kcat',
          ['-b', config.standby.brokers[0]!, '-C', '-t', topic, '-e', '-q', '-f', '%o\n'],
          { reject: false },
        );
        return read.exitCode === 0 && read.stdout.split('\n').filter(Boolean).length === 100;
      },
      120_000,
    );
    const status = await runKdr(['status', '--json'], { env });
    expect(status.exitCode, status.stderr).toBe(0);
    const row = JSON.parse(status.stdout).partitions.filter((p: { topic: string }) => p.topic === topic);
    expect(row.map((p: { lagOffsets: number }) => p.lagOffsets)).toEqual([0, 0]);
    // The age of the last mirrored record: its timestamp is the last source record's, as kcat reads it.
    const source = await execa('kcat', [
      '-b',
      config.primary.brokers[0]!,
      '-C',
      '-t',
      topic,
      '-e',
      '-q',
      '-f',
      '%p %T\n',
    ]);
    const lastTimestamp = new Map<number, number>();
    for (const line of source.stdout.split('\n').filter(Boolean)) {
      const [partition, timestamp] = line.split(' ').map(Number) as [number, number];
      lastTimestamp.set(partition, Math.max(lastTimestamp.get(partition) ?? 0, timestamp));
    }
    for (const p of row as {
      partition: number;
      lastMirroredTimestamp: number;
      lastMirroredAgeSeconds: number;
    }[]) {
      expect(p.lastMirroredTimestamp).toBe(lastTimestamp.get(p.partition));
      expect(p.lastMirroredAgeSeconds).toBeGreaterThanOrEqual(0);
    }
    // Prometheus metrics: the new topic's lag, and what was mirrored.
    const metrics = await fetch(`http://127.0.0.1:${config.metricsPort}/metrics`).then((r) => r.text());
    for (const p of [0, 1]) {
      expect(metrics).toContain(`kdr_replication_lag_records{topic="${topic}",partition="${p}"} 0`);
      expect(metrics).toMatch(
        new RegExp(
          `^kdr_last_mirrored_age_seconds\\{topic="${topic}",partition="${p}"\\} \\d+(\\.\\d+)?$`,
          'm',
        ),
      );
    }
    expect(Number(/^kdr_records_mirrored_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(100);
    expect(metrics).toMatch(/^kdr_epoch\{pair="primary-standby",state="MIRRORING"\} 0$/m);
    // It also checkpoints and takes snapshots on its schedules.
    expect(JSON.parse(status.stdout).checkpoint.at).not.toBeNull();
    await eventually(
      'kdr run took a snapshot',
      async () => {
        const list = await runKdr(['snapshots', 'list', '--json'], { env });
        return list.exitCode === 0 && JSON.parse(list.stdout).length > 0;
      },
      60_000,
    );

    process.kill(-child.pid!, 'SIGINT'); // the whole job, as a terminal's Ctrl-C
    await exited; // npm itself dies of the SIGINT; kdr run finishes its cleanup
    await eventually(
      'no process of kdr run or its lab remains',
      async () => (await execa('pgrep', ['-f', '--', dir], { reject: false })).stdout.trim() === '',
      60_000,
    );
    await eventually(
      'kdr run reports what it stopped',
      () => output.includes('stopped moto, primary-1, standby-1'),
      10_000,
    );
    expect(output).toContain('SIGINT received, stopping');
    expect(output).toContain('committed what was mirrored');
  } finally {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
    await execa(process.execPath, [path.join(REPO_ROOT, 'bin/kdr.mjs'), 'lab', 'down'], {
      env,
      reject: false,
    });
  }
});
