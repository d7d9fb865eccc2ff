import { afterEach, describe, expect, it } from 'vitest';
import { killAll, startMirror } from '../helpers/chaos.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  createTopics,
  eventually,
  kafkaFor,
  readWithKcat,
  withAdmin,
} from '../helpers/lab.ts';
import { copiesOn, describeGroup, kdrJson, ownDrillPair } from '../helpers/operations.ts';

/**
 * Failover and failback while applications and the mirror keep running: no group is placed past a record
 * it never read, and every record written on either side during the outage is read by the moved groups
 * or named in the report. The RPO of an unplanned failover never says 0 when it cannot know.
 */

afterEach(killAll);

/** A producer writing one record every `everyMs` until stopped. */
function steadyProducer(cluster: 'primary' | 'standby', topic: string, prefix: string, everyMs = 20) {
  let stop = false;
  let sent = 0;
  const done = (async () => {
    const producer = kafkaFor(cluster).producer({ idempotent: true });
    await producer.connect();
    try {
      while (!stop) {
        await producer.send({ topic, messages: [{ partition: 0, value: `${prefix}-${sent}` }] });
        sent++;
        await new Promise((r) => setTimeout(r, everyMs));
      }
    } finally {
      await producer.disconnect();
    }
  })();
  return {
    stop: async () => {
      stop = true;
      await done;
      return sent;
    },
  };
}

async function endOffset(cluster: 'primary' | 'standby', topic: string): Promise<number> {
  return withAdmin(cluster, async (admin) => Number((await admin.fetchTopicOffsets(topic))[0]!.high));
}

describe('planned failover with producers and a live mirror', () => {
  it('places every group right after its last committed record, over 20 repetitions', {
    timeout: 900_000,
  }, async () => {
    const problems: string[] = [];
    for (let rep = 0; rep < 20; rep++) {
      const d = ownDrillPair(`race-fo-${rep}`);
      await createTopics('primary', [{ topic: d.topic, numPartitions: 1 }]);
      const producer = steadyProducer('primary', d.topic, `r${rep}`);
      const mirror = startMirror(d.env);
      await new Promise((r) => setTimeout(r, 2500));
      // The group caught up with the primary and stopped: its next record may not be mirrored yet.
      const committed = await endOffset('primary', d.topic);
      await commitGroupOffsets('primary', d.group, d.topic, [committed]);
      const fo = await kdrJson(['failover', '--planned', '--timeout', '30'], d.env);
      await producer.stop();
      expect(fo.exitCode, `${fo.stderr.slice(-1500)}\n${mirror.output().slice(-1500)}`).toBe(0);
      await killAll();
      const position = (await describeGroup('standby', d.group, d.topic)).get(0)!;
      expect(fo.json.groups[d.group][0].standbyOffset).toBe(position);
      const copies = await copiesOn('standby', d.topic, 0);
      const skipped = copies.filter((c) => c.offset < position && c.src! >= committed);
      const next = copies.find((c) => c.offset >= position);
      if (skipped.length > 0)
        problems.push(`rep ${rep}: skipped ${skipped.map((c) => c.src).join(',')} (position ${position})`);
      if (next && next.src !== committed)
        problems.push(
          `rep ${rep}: first record at ${position} is source ${next.src}, committed ${committed}`,
        );
      if (!next && copies.some((c) => c.src! >= committed))
        problems.push(`rep ${rep}: nothing read from ${position}`);
    }
    expect(problems).toEqual([]);
  });
});

describe('failback with outage records and producers still writing on both sides', () => {
  it('every record written on either side is read by the moved group or named in the report', {
    timeout: 300_000,
  }, async () => {
    const d = ownDrillPair('race-fb');
    await createTopics('primary', [{ topic: d.topic, numPartitions: 1 }]);
    const before = steadyProducer('primary', d.topic, 'before', 5);
    await new Promise((r) => setTimeout(r, 500));
    await before.stop();
    const caughtUp = await endOffset('primary', d.topic);
    await commitGroupOffsets('primary', d.group, d.topic, [caughtUp]);
    const fo = await kdrJson(['failover', '--planned', '--timeout', '60'], d.env);
    expect(fo.exitCode, fo.stderr.slice(-1500)).toBe(0);
    // Split brain: the old primary keeps taking records (never on the standby) through the failback.
    const onPrimary = steadyProducer('primary', d.topic, 'outage', 20);
    // Applications write to the standby; the group reads some of it there.
    const writer = steadyProducer('standby', d.topic, 'standby', 10);
    await new Promise((r) => setTimeout(r, 1500));
    const standbyPosition = await endOffset('standby', d.topic);
    await commitGroupOffsets('standby', d.group, d.topic, [standbyPosition]);
    // ...and the standby writer goes on until the failback made the primary active and copied back.
    const failback = runKdr(['failback', '--timeout', '60', '--json'], { env: d.env }) as ReturnType<
      typeof runKdr
    > & { stderr: NodeJS.ReadableStream };
    let log = '';
    failback.stderr.on('data', (chunk) => {
      log += chunk;
    });
    await eventually(
      'the failback reaching start-mirror',
      () => log.includes('"phase":"start-mirror"'),
      120_000,
    );
    await writer.stop();
    const fb = await failback;
    await onPrimary.stop();
    expect(fb.exitCode, fb.stderr.slice(-2000)).toBe(0);
    const report = JSON.parse(fb.stdout);
    const primaryPosition = (await describeGroup('primary', d.group, d.topic)).get(0)!;
    expect(report.groups[d.group][0].standbyOffset).toBe(primaryPosition);

    const primaryLog = await copiesOn('primary', d.topic, 0);
    const named = (offset: number, ranges: { from: number; to: number }[]) =>
      ranges.some((r) => offset >= r.from && offset <= r.to);
    // The primary's own records since the failover: read by the group, or named with it in `unread`.
    const unread = report.unread.filter((u: { group: string }) => u.group === d.group);
    const own = primaryLog.filter((c) => c.src === null && c.offset >= caughtUp);
    expect(own.length).toBeGreaterThan(10);
    for (const r of own)
      expect(r.offset >= primaryPosition || named(r.offset, unread), `primary record ${r.offset}`).toBe(true);
    expect(unread.length).toBeGreaterThan(0);
    // Standby records after the group's standby position: copied back after its primary position, or
    // named as left on the standby.
    const left = report.leftOnStandby.map((l: { from: number; to: number }) => ({
      from: l.from,
      to: l.to - 1,
    }));
    const copiedBack = new Set(
      primaryLog.filter((c) => c.src !== null && c.offset >= primaryPosition).map((c) => c.src),
    );
    // Every one written before the primary became active (the flip, logged as "failed back"
    // as it happens); the writer went on after it, and the report names those it saw too.
    const flippedAt = Date.parse(
      JSON.parse(log.split('\n').find((l) => l.includes('"message":"failed back"'))!).time,
    );
    const standbyLog = await readWithKcat('standby', d.topic, { partition: 0 });
    const standbyOriginals = standbyLog.filter(
      (r) => !r.headers.some(([k]) => k === 'kdr.src') && r.offset >= standbyPosition,
    );
    const beforeFlip = standbyOriginals.filter((r) => r.timestamp < flippedAt);
    expect(beforeFlip.length).toBeGreaterThan(10);
    for (const r of beforeFlip)
      expect(copiedBack.has(r.offset) || named(r.offset, left), `standby record ${r.offset}`).toBe(true);
    // Written after the flip: copied back while the failback still copied, named when it saw them, and
    // not known to the report when written after its last look (the RUNBOOK says so).
    const after = standbyOriginals.filter((r) => r.timestamp >= flippedAt);
    const covered = after.filter((r) => copiedBack.has(r.offset) || named(r.offset, left));
    console.info(
      `race-fb: ${covered.length} of ${after.length} standby records written after the flip copied back or named`,
    );
  });
});

describe('unplanned failover after checkpoints stopped', () => {
  it('does not report RPO 0 when 10,000 records were written after the last observation', {
    timeout: 300_000,
  }, async () => {
    const d = ownDrillPair('rpo-stale');
    await createTopics('primary', [{ topic: d.topic, numPartitions: 1 }]);
    const producer = kafkaFor('primary').producer({ idempotent: true });
    await producer.connect();
    await producer.send({ topic: d.topic, messages: [{ value: 'first' }] });
    expect((await kdrJson(['mirror', '--until-caught-up'], d.env)).exitCode).toBe(0);
    expect((await kdrJson(['checkpoint'], d.env)).exitCode).toBe(0);
    // Checkpoints stop; the primary takes 10,000 more records that never reach the standby.
    for (let i = 0; i < 10_000; i += 1000)
      await producer.send({
        topic: d.topic,
        messages: Array.from({ length: 1000 }, (_, j) => ({ value: `later-${i + j}` })),
      });
    await producer.disconnect();
    const fo = await runKdr(['failover', '--unplanned'], { env: d.env });
    expect(fo.exitCode, fo.stderr).toBe(0);
    expect(fo.stdout).not.toMatch(/RPO 0 records/);
    expect(fo.stdout).toMatch(
      /RPO unknown: at least 0 records .* last observed [\d.]+ s before the failover/,
    );
    const status = await kdrJson(['status'], d.env);
    expect(status.json.operation).toMatchObject({ kind: 'failover', mode: 'unplanned', outcome: 'done' });
  });
});
