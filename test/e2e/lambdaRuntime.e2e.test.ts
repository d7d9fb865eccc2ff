import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageStack } from '../../infra/aws/packageStack.ts';
import { loadStack } from '../../infra/aws/stackIam.ts';
import {
  classifyInvocation,
  ensureLambdaRuntime,
  type FunctionSpec,
  functionSpec,
  LambdaContainer,
  type LambdaRuntime,
} from '../../infra/local/lambdaRuntime.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { isAlive } from '../../infra/local/processes.ts';
import { runKdr } from '../helpers/cli.ts';
import { commitGroupOffsets, createTopics, uniqueName } from '../helpers/lab.ts';
import { lambdaEnvironment } from '../helpers/lambdaLab.ts';
import { describeGroup, ownDrillPair } from '../helpers/operations.ts';
import { fillPartitions } from '../helpers/records.ts';

/**
 * The packaged functions run the way Lambda runs them: each zip from `sls package --stage local`
 * unpacked and started by AWS's Runtime Interface Emulator with AWS's Node runtime client on Node 22
 * (the template's nodejs22.x), with the environment, timeout and memory of the packaged template.
 */

let runtime: LambdaRuntime;
let packagedDir: string;
let templatePath: string;
const containers: LambdaContainer[] = [];

beforeAll(async () => {
  runtime = await ensureLambdaRuntime(labPaths().cache);
  // The template's runtime is nodejs22.x: the emulated one must be the same line.
  expect((await execa(runtime.node, ['--version'])).stdout).toMatch(/^v22\./);
  ({ dir: packagedDir, templatePath } = await packageStack({ stage: 'local', prefix: 'kdr-rie-' }));
}, 600_000);

afterAll(async () => {
  await Promise.all(containers.map((c) => c.kill()));
});

/** A container of a packaged function, with what Lambda adds: its role's credentials and region. */
function container(
  name: string,
  environment: Record<string, string> = {},
  overrides: Partial<FunctionSpec> = {},
): LambdaContainer {
  const spec = { ...functionSpec(loadStack(templatePath), packagedDir, name), ...overrides };
  const c = new LambdaContainer(spec, runtime, {
    logDir: labPaths().logs,
    environment: lambdaEnvironment(environment),
  });
  containers.push(c);
  return c;
}

/** A group's committed offsets on the standby (Kafka's ConsumerGroupCommand), as [partition, offset]. */
const standbyGroup = async (group: string, topic: string) =>
  [...(await describeGroup('standby', group, topic)).entries()].sort();

describe('classifyInvocation: what the emulator answered', () => {
  it('tells a result, a function error and a timeout apart (RIE answers 200 to all three)', () => {
    expect(classifyInvocation('{"a":1}', 5)).toEqual({ outcome: 'ok', payload: { a: 1 }, ms: 5 });
    expect(classifyInvocation('{"errorType":"ConfigError","errorMessage":"bad"}', 5)).toMatchObject({
      outcome: 'error',
      errorType: 'ConfigError',
    });
    expect(classifyInvocation('Task timed out after 1.00 seconds', 5)).toMatchObject({ outcome: 'timeout' });
  });
});

describe('packaged functions under the Lambda Runtime Interface Emulator', () => {
  it('status answers from its zip on Node 22, with the template environment; a killed container starts cold', async () => {
    const pair = uniqueName('rie-pair');
    const status = container('status', { KDR_PAIR: pair });
    expect(status.spec).toMatchObject({ timeoutSeconds: expect.any(Number), memoryMb: expect.any(Number) });
    expect(status.spec.environment.KDR_BUCKET).toBe('kdr-local');

    const first = await status.invoke({});
    expect(first.outcome, JSON.stringify(first)).toBe('ok');
    expect((first as { payload: { pair: string } }).payload.pair).toBe(pair);
    const warm = await status.invoke({});
    expect(warm.outcome).toBe('ok');

    // The runtime (Node with the handler) runs in a process group of its own under RIE: all must die.
    const processes = status.processes();
    expect(processes.length).toBeGreaterThanOrEqual(2);
    await status.kill();
    expect(processes.filter(isAlive)).toEqual([]);
    const cold = await status.invoke({});
    expect(cold.outcome, JSON.stringify(cold)).toBe('ok');
    // Two inits (the first start and the one after the kill), three invocations, on Node 22.
    const log = readFileSync(status.log, 'utf8');
    expect(log.match(/Init Duration/g)?.length).toBe(2);
    expect(log.match(/^REPORT RequestId/gm)?.length).toBe(3);
  });

  it('a malformed request is a function error, named by the handler', async () => {
    const snapshot = container('snapshot', { KDR_PAIR: uniqueName('rie-pair') });
    const answer = await snapshot.invoke({ cluster: 'elsewhere' });
    expect(answer).toMatchObject({ outcome: 'error', errorType: 'EventError' });
    expect((answer as { errorMessage: string }).errorMessage).toContain(
      'malformed snapshot request at cluster',
    );
  });

  it('planned failover through the emulator moves the group exactly', { timeout: 300_000 }, async () => {
    const { topic, group, env } = ownDrillPair('rie');
    const pair = env.KDR_PAIR;
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await fillPartitions(topic, [0, 1], 40, (_, i) => `r${i}`);
    const mirrored = await runKdr(['mirror', '--until-caught-up'], { env });
    expect(mirrored.exitCode, mirrored.stderr.slice(-1000)).toBe(0);
    await commitGroupOffsets('primary', group, topic, [15, 40]);
    await commitGroupOffsets('standby', uniqueName('rie-ready'), topic, [0, 0]);

    const failover = container('failover', env);
    // wait: run it in this invocation (lambdaLab.e2e drives the asynchronous continuation instead).
    const answer = await failover.invoke({ mode: 'planned', wait: true });
    expect(answer.outcome, JSON.stringify(answer)).toBe('ok');
    const report = (answer as { payload: Record<string, unknown> }).payload;
    expect(report).toMatchObject({ pair, mode: 'planned', from: 'primary', to: 'standby', epoch: 2 });
    expect(await standbyGroup(group, topic)).toEqual([
      [0, 15],
      [1, 40],
    ]);
    expect(path.basename(failover.spec.zip)).toBe('failover.zip');
  });

  it('a failover whose invocation times out mid-phase is taken over by the next invocation, exactly once', {
    timeout: 300_000,
  }, async () => {
    const drill = ownDrillPair('rie');
    const { topic, group } = drill;
    // A short lease, so that the next invocation may take over soon after the dead one stops renewing.
    const env = { ...drill.env, KDR_OPERATION_LEASE_MS: '3000' };
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await fillPartitions(topic, [0, 1], 30, (_, i) => `r${i}`);
    const mirrored = await runKdr(['mirror', '--until-caught-up'], { env });
    expect(mirrored.exitCode, mirrored.stderr.slice(-1000)).toBe(0);
    await commitGroupOffsets('primary', group, topic, [7, 30]);

    // The first invocation moves the groups, parks when the flip begins and runs into its timeout: the
    // emulator answers "Task timed out" and kills the runtime, as Lambda ends a timed-out invocation.
    // 30 s leaves the phases 15 s (the function keeps 15 s in hand to hand over to a continuation).
    const first = container('failover', { ...env, KDR_DRILL_HOLD_PHASE: 'flip' }, { timeoutSeconds: 30 });
    const timedOut = await first.invoke({ mode: 'planned', wait: true });
    expect(timedOut.outcome, JSON.stringify(timedOut)).toBe('timeout');
    expect(readFileSync(first.log, 'utf8')).toContain('holding at phase flip');
    const during = JSON.parse((await runKdr(['status', '--json'], { env })).stdout);
    expect(during.control).toMatchObject({ state: 'FAILING_OVER', epoch: 1 });
    expect(during.operation).toMatchObject({ kind: 'failover', phase: 'flip', outcome: 'in-progress' });
    expect(await standbyGroup(group, topic)).toEqual([
      [0, 7],
      [1, 30],
    ]);
    // Meanwhile the group's position on the standby changes (an application, an operator): a takeover
    // that moved the groups again would overwrite it.
    await commitGroupOffsets('standby', group, topic, [3, 3]);

    // The next invocation (a retry, in another container) takes the same operation over once the lease
    // lapsed, and goes on from the flip.
    await new Promise((r) => setTimeout(r, 4000));
    const second = container('failover', env);
    const answer = await second.invoke({ mode: 'planned', wait: true });
    expect(answer.outcome, JSON.stringify(answer)).toBe('ok');
    const report = (answer as { payload: { operationId: string; epoch: number } }).payload;
    expect(report).toMatchObject({ operationId: during.operation.id, epoch: 2 });
    expect(await standbyGroup(group, topic)).toEqual([
      [0, 3],
      [1, 3],
    ]);
    const after = JSON.parse((await runKdr(['status', '--json'], { env })).stdout);
    expect(after.control).toMatchObject({ state: 'FAILED_OVER', activeCluster: 'standby', epoch: 2 });
  });
});
