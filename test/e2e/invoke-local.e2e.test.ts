import { beforeAll, expect, it } from 'vitest';
import { buildFunctions } from '../../infra/build.ts';
import { invokeLocal, runKdr } from '../helpers/cli.ts';
import { commitGroupOffsets, createTopics, uniqueName } from '../helpers/lab.ts';
import { describeGroup, ownDrillPair } from '../helpers/operations.ts';
import { fillPartitions } from '../helpers/records.ts';

/**
 * The drill an operator runs before trusting a deployment: the failover function invoked through the
 * Serverless Framework (`sls invoke local --stage local`, stage `local` being the lab), on a mirrored
 * topic with a consumer group that had read part of it.
 */

beforeAll(async () => {
  await buildFunctions(['failover']);
}, 120_000);

it('sls invoke local --stage local -f failover --data {"mode":"planned"} fails the lab pair over', {
  timeout: 300_000,
}, async () => {
  const { topic, group, env } = ownDrillPair('invoke');
  const pair = env.KDR_PAIR;
  await createTopics('primary', [{ topic, numPartitions: 2 }]);
  await fillPartitions(topic, [0, 1], 50, (_, i) => `r${i}`);
  const mirrored = await runKdr(['mirror', '--until-caught-up'], { env });
  expect(mirrored.exitCode, mirrored.stderr.slice(-1000)).toBe(0);
  await commitGroupOffsets('primary', group, topic, [20, 50]);
  // The standby may have just been restarted by an earlier test: wait until its group coordinator
  // answers, so that this drill measures the function, not a broker still loading its offsets.
  await commitGroupOffsets('standby', uniqueName('invoke-ready'), topic, [0, 0]);

  const result = await invokeLocal('failover', { data: { mode: 'planned' }, env });
  expect(result.exitCode, result.stderr.slice(-2000) + result.stdout.slice(-2000)).toBe(0);
  const report = result.result as {
    rpo: { records: number };
    warnings: unknown[];
    groups: Record<string, { partition: number; standbyOffset: number }[]>;
  };
  expect(report).toMatchObject({ pair, mode: 'planned', from: 'primary', to: 'standby', epoch: 2 });
  expect(report.rpo.records).toBe(0);
  expect(report.warnings).toEqual([]);
  // Kafka's own tool sees the group on the standby exactly where it was on the primary (same offsets:
  // the standby topic was empty before the mirror wrote it, no transaction marker in between here).
  const described = await describeGroup('standby', group, topic);
  const moved = report.groups[group] as { partition: number; standbyOffset: number }[];
  expect([...described.entries()].sort()).toEqual(moved.map((m) => [m.partition, m.standbyOffset]).sort());
  const status = JSON.parse((await runKdr(['status', '--json'], { env })).stdout);
  expect(status.control).toMatchObject({ state: 'FAILED_OVER', activeCluster: 'standby', epoch: 2 });
});
