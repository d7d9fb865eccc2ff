import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime } from '../../src/runtime.ts';
import { kill, killAll, startMirror } from '../helpers/chaos.ts';
import { runKdr } from '../helpers/cli.ts';
import { createTopics, eventually, uniqueName, withAdmin } from '../helpers/lab.ts';
import { edgeCaseRecord, prng, produce } from '../helpers/records.ts';

/**
 * Topic selections that select nothing, through the real CLI: `--topics` is matched against the whole
 * topic name, so `<prefix>-orders` selects neither `<prefix>-orders-eu` nor `<prefix>-orders-us`. A
 * mirror until caught up, a snapshot and a restore of such a selection fail with an input error (exit 2)
 * that says so and names the topics there, and write nothing; a long-running mirror only warns, once.
 */

const prefix = uniqueName('sel');
const eu = `${prefix}-orders-eu`;
const us = `${prefix}-orders-us`;
const env = {
  KDR_PAIR: uniqueName('sel-pair'),
  KDR_SNAPSHOT_PREFIX: `test/${prefix}`,
  KDR_MIRROR_GROUP_ID: uniqueName('sel-g'),
  KDR_TOPICS: `${prefix}-.*`,
};
const nothing = `${prefix}-orders`;
const RECORDS = 20;

const standbyTopics = (start = prefix) =>
  withAdmin('standby', async (admin) => (await admin.listTopics()).filter((t) => t.startsWith(start)));

/** What every empty-selection error says, on stderr and in the --json error. */
function expectExplained(message: string, where: string, option = '--topics') {
  expect(message).toContain(`${option} ${JSON.stringify(nothing)} selects no topic ${where}`);
  expect(message).toContain('whole topic name');
  expect(message).toContain('full match');
  expect(message).toContain(`Did you mean ${JSON.stringify(`${nothing}.*`)}? It selects 2 topics.`);
  expect(message).toContain(`${eu}, ${us}`);
}

afterEach(killAll);

beforeAll(async () => {
  await createTopics('primary', [
    { topic: eu, numPartitions: 1 },
    { topic: us, numPartitions: 2 },
  ]);
  const random = prng(8);
  for (const [topic, partition] of [
    [eu, 0],
    [us, 0],
    [us, 1],
  ] as const)
    await produce(
      'primary',
      topic,
      partition,
      Array.from({ length: RECORDS }, (_, i) => edgeCaseRecord(i, random, Date.now())),
    );
});

describe('a topic selection that selects nothing', () => {
  it('fails kdr mirror --until-caught-up with exit 2, creates nothing, and --json prints the error', async () => {
    const human = await runKdr(['mirror', '--topics', nothing, '--until-caught-up'], { env });
    expect(human.exitCode, human.stderr.slice(-2000)).toBe(2);
    expect(human.stdout).toBe('');
    expectExplained(human.stderr, 'on primary');

    const json = await runKdr(['mirror', '--topics', nothing, '--until-caught-up', '--json'], { env });
    expect(json.exitCode, json.stderr.slice(-2000)).toBe(2);
    const error = JSON.parse(json.stdout);
    expect(error).toMatchObject({ error: 'INPUT_INVALID', regex: nothing, suggestion: `${nothing}.*` });
    expectExplained(error.message, 'on primary');
    expectExplained(json.stderr, 'on primary');

    // Also when the selection comes from the environment.
    const fromEnv = await runKdr(['mirror', '--until-caught-up'], { env: { ...env, KDR_TOPICS: nothing } });
    expect(fromEnv.exitCode, fromEnv.stderr.slice(-2000)).toBe(2);
    expectExplained(fromEnv.stderr, 'on primary', 'KDR_TOPICS');

    expect(await standbyTopics()).toEqual([]);
  });

  it('still mirrors a selection that matches (positive control)', async () => {
    const result = await runKdr(['mirror', '--topics', `${nothing}.*`, '--until-caught-up', '--json'], {
      env,
    });
    expect(result.exitCode, result.stderr.slice(-2000)).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.topics).toEqual([eu, us]);
    expect(summary.recordsMirrored).toBe(3 * RECORDS);
    expect((await standbyTopics()).sort()).toEqual([eu, us]);
  });

  it('only warns, once, in a long-running kdr mirror', { timeout: 120_000 }, async () => {
    const mirror = startMirror(
      {
        ...env,
        KDR_TOPICS: nothing,
        KDR_TOPIC_SYNC_INTERVAL_MS: '1000',
        KDR_MIRROR_GROUP_ID: uniqueName('g'),
      },
      [],
    );
    // The log is JSON lines: the warning's hint names the regex (quoted, so escaped here).
    const warning = 'selects no topic on primary';
    await eventually('the mirror warned', () => mirror.output().includes(warning), 60_000);
    expect(mirror.output()).toContain(nothing);
    expect(mirror.output()).toContain('whole topic name');
    // Several topic re-syncs later, still one warning, and still running.
    await sleep(5000);
    expect(mirror.output().split(warning).length - 1, mirror.output().slice(-2000)).toBe(1);
    expect(mirror.child.exitCode).toBeNull();
    await kill(mirror.child, 'SIGTERM');
    expect(mirror.child.exitCode, mirror.output().slice(-2000)).toBe(0);
  });

  it('fails kdr snapshot with exit 2 and writes nothing to the bucket', async () => {
    const human = await runKdr(['snapshot', '--topics', nothing], { env });
    expect(human.exitCode, human.stderr.slice(-2000)).toBe(2);
    expectExplained(human.stderr, 'on primary');

    const json = await runKdr(['snapshot', '--topics', nothing, '--json'], { env });
    expect(json.exitCode, json.stderr.slice(-2000)).toBe(2);
    const error = JSON.parse(json.stdout);
    expect(error).toMatchObject({ error: 'INPUT_INVALID', regex: nothing });
    expectExplained(error.message, 'on primary');

    const rt = createRuntime(loadConfig({ ...process.env, ...env }), silentLogger);
    try {
      expect(await rt.objectStore.list(`${env.KDR_SNAPSHOT_PREFIX}/`)).toEqual([]);
    } finally {
      await rt.close();
    }
  });

  it('fails kdr restore with exit 2, naming the topics in the snapshot', async () => {
    const taken = await runKdr(['snapshot', '--json'], { env });
    expect(taken.exitCode, taken.stderr.slice(-2000)).toBe(0);
    const snapshotId = JSON.parse(taken.stdout).snapshotId as string;
    const args = ['restore', '--snapshot', snapshotId, '--target', 'standby', '--topic-prefix', 'r.'];

    const human = await runKdr([...args, '--topics', nothing], { env });
    expect(human.exitCode, human.stderr.slice(-2000)).toBe(2);
    expectExplained(human.stderr, `in snapshot ${snapshotId}`);

    const json = await runKdr([...args, '--topics', nothing, '--json'], { env });
    expect(json.exitCode, json.stderr.slice(-2000)).toBe(2);
    const error = JSON.parse(json.stdout);
    expect(error).toMatchObject({ error: 'INPUT_INVALID', regex: nothing, suggestion: `${nothing}.*` });
    expectExplained(error.message, `in snapshot ${snapshotId}`);
    expect(await standbyTopics(`r.${prefix}`)).toEqual([]);
  });
});

describe('an invalid topic regex', () => {
  for (const command of [
    ['mirror', '--until-caught-up'],
    ['snapshot'],
    ['restore', '--snapshot', '20261124T193000Z-3fa9', '--target', 'standby'],
  ]) {
    it(`fails kdr ${command[0]} with exit 2, naming the regex`, async () => {
      const human = await runKdr([...command, '--topics', `${prefix}-(orders`], { env });
      expect(human.exitCode, human.stderr.slice(-2000)).toBe(2);
      expect(human.stderr).toContain(
        `--topics ${JSON.stringify(`${prefix}-(orders`)} is not a valid regular expression`,
      );
      const json = await runKdr([...command, '--topics', `${prefix}-(orders`, '--json'], { env });
      expect(json.exitCode, json.stderr.slice(-2000)).toBe(2);
      expect(JSON.parse(json.stdout)).toMatchObject({ error: 'INPUT_INVALID', regex: `${prefix}-(orders` });
    });
  }
});
