import { setTimeout as sleep } from 'node:timers/promises';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { GetQueueUrlCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildFunctions } from '../../infra/build.ts';
import type { KafkaEventSource } from '../../infra/local/kafkaEventSource.ts';
import type { LambdaLab } from '../../infra/local/lambdaLab.ts';
import { descendants, LAMBDA_CONTAINER_MARK } from '../../infra/local/lambdaRuntime.ts';
import { labPaths } from '../../infra/local/paths.ts';
import { isAlive, processesWithEnvironment } from '../../infra/local/processes.ts';
import { kafkaProtocolError } from '../../src/adapters/kafka/errors.ts';
import { runKdr } from '../helpers/cli.ts';
import {
  commitGroupOffsets,
  createTopics,
  eventually,
  kafkaFor,
  readWithKcat,
  uniqueName,
  withAdmin,
} from '../helpers/lab.ts';
import {
  invokeFunction,
  labIamCheck,
  labLambdaClient,
  labSqsClient,
  mappingStates,
  startLambdaLab,
} from '../helpers/lambdaLab.ts';
import { describeGroup, ownDrillPair } from '../helpers/operations.ts';
import { compareClusters } from '../helpers/records.ts';

/**
 * The packaged stack run as Lambda runs it: functions in the Runtime Interface Emulator behind the lab's
 * Lambda API, the mirror fed by the lab's Kafka event source from the template's mapping, schedules
 * from the template's rules. What is checked is read back with kcat and Kafka's own tools.
 */

let lab: LambdaLab | undefined;

beforeAll(async () => {
  await buildFunctions();
}, 300_000);

afterEach(async () => {
  if (!lab) return;
  await lab.close();
  // Every AWS call its packaged functions made is allowed by the roles of the template it ran.
  const iam = await labIamCheck(lab);
  lab = undefined;
  expect(iam.denied).toEqual([]);
});

/**
 * The mapping's consumer group has committed every partition's end: everything was delivered. Not yet
 * while Kafka cannot answer (a fresh broker's group coordinator still loading): asked again.
 */
async function caughtUp(source: KafkaEventSource): Promise<boolean> {
  const { topic } = source.definition;
  try {
    return await withAdmin('primary', async (admin) => {
      const [ends, committed] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchOffsets({ groupId: source.groupId, topics: [topic] }),
      ]);
      const at = new Map(committed[0]!.partitions.map((p) => [p.partition, Number(p.offset)]));
      return ends.every((e) => at.get(e.partition) === Number(e.high));
    });
  } catch (error) {
    if (kafkaProtocolError(error).retriable) return false;
    throw error;
  }
}

/** Writes `count` records per partition in sends of 500, with a header holding bytes above 0x7f. */
async function produce(topic: string, partitions: number, count: number, tag: string) {
  // Idempotent: a send retried under load must not write its records twice (the counts below are exact).
  const producer = kafkaFor('primary').producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let start = 0; start < count; start += 500) {
      await producer.send({
        topic,
        messages: Array.from({ length: partitions * Math.min(500, count - start) }, (_, i) => {
          const n = start + Math.floor(i / partitions);
          return {
            partition: i % partitions,
            key: `${tag}-${n}`,
            value: `${tag}-${i % partitions}-${n}-${'x'.repeat(80)}`,
            headers: { trace: Buffer.from([0xff, 0x80, n & 0xff, 0x00]) },
          };
        }),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

describe('the packaged mirror function fed by the lab Kafka event source', () => {
  it('mirrors 100,000 records or more exactly once through container kills and redeliveries', {
    timeout: 900_000,
  }, async () => {
    const { topic, env } = ownDrillPair('esm');
    const partitions = 4;
    await createTopics('primary', [{ topic, numPartitions: partitions }]);
    // Every 4th successful batch comes again uncommitted, as after a poller restart before its commit.
    lab = await startLambdaLab({
      topic,
      pair: env.KDR_PAIR,
      environment: env,
      schedules: false,
      eventSource: { redeliverEvery: 4 },
    });
    const source = lab.eventSources[0]!;
    expect(source.definition).toMatchObject({ topic, batchSize: 1000, kind: 'SelfManagedKafka' });

    // 100,000 records, and while fewer than six kills have landed once the mirror caught up with them,
    // 10,000 more at a time (a faster function is busy less often: a fixed load could be mirrored before the
    // kills), at most 150,000 in all (the comparison reads both sides whole).
    let kills = 0;
    let produced = 0;
    let rounds = 0;
    let producingDone = false;
    const round = (perPartition: number) => {
      producingDone = false;
      const tag = `load${rounds++}`;
      return produce(topic, partitions, perPartition, tag).then(() => {
        produced += partitions * perPartition;
        producingDone = true;
      });
    };
    let producing = round(25_000);
    // Kill a mirror container in the middle of an invocation about every 3 s while it has work.
    const started = Date.now();
    while (kills < 6 && Date.now() - started < 300_000) {
      await sleep(3000);
      for (let look = 0; look < 40; look++) {
        const busy = lab.api.busyContainers('mirror');
        if (busy.length > 0) {
          await busy[Math.floor(Math.random() * busy.length)]!.kill();
          kills++;
          break;
        }
        await sleep(50);
      }
      if (kills < 6 && rounds <= 5 && producingDone && (await caughtUp(source))) {
        await producing;
        producing = round(2_500);
      }
    }
    await producing;
    await eventually('the event source delivered every record', () => caughtUp(source), 600_000);

    const compared = await compareClusters([topic]);
    expect(compared.problems).toEqual([]);
    expect(produced).toBeGreaterThanOrEqual(100_000);
    expect(compared.records).toBe(produced);
    expect(kills).toBeGreaterThanOrEqual(6);
    // Killed invocations failed and their batches came again; redelivered batches were mirrored again
    // without a copy (compareClusters above). Not one failure per kill: a kill can land just after the
    // emulator answered, and then that invocation had succeeded.
    expect(source.stats.failures).toBeGreaterThan(0);
    expect(source.stats.redeliveries).toBeGreaterThan(0);
    // The packaged function's calls were recorded (and are checked after the test).
    expect((await labIamCheck(lab)).byFunction.mirror).toBeGreaterThan(0);
  });
});

describe('an MSK event source mapping', () => {
  it('feeds the packaged mirror aws:kafka events, mirrored exactly', { timeout: 300_000 }, async () => {
    const { topic, env } = ownDrillPair('esm-msk');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await produce(topic, 2, 200, 'msk');
    lab = await startLambdaLab({
      topic,
      pair: env.KDR_PAIR,
      environment: env,
      schedules: false,
      params: ['sourceType=msk', 'mskAuthType=none'],
    });
    const source = lab.eventSources[0]!;
    // The template's MSK mapping names the cluster by ARN; the lab's events carry the lab's brokers.
    expect(source.definition).toMatchObject({
      kind: 'aws:kafka',
      eventSourceArn: expect.stringMatching(/^arn:aws:kafka:/),
    });
    await eventually('the event source delivered every record', () => caughtUp(source), 120_000);
    const compared = await compareClusters([topic]);
    expect(compared.problems).toEqual([]);
    expect(compared.records).toBe(400);
  });
});

describe('failover and failback invoked through the lab Lambda API', () => {
  it('planned failover disables the event source and moves the group exactly; failback enables it again', {
    timeout: 600_000,
  }, async () => {
    const { topic, group, env } = ownDrillPair('esm-fo');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await produce(topic, 2, 300, 'before');
    lab = await startLambdaLab({ topic, pair: env.KDR_PAIR, environment: env, schedules: false });
    const source = lab.eventSources[0]!;
    await eventually('the event source delivered every record', () => caughtUp(source), 120_000);
    await commitGroupOffsets('primary', group, topic, [120, 300]);
    const client = labLambdaClient(lab);
    expect(await mappingStates(client, 'kdr-local-mirror')).toEqual(['Enabled']);

    // As an operator invokes it: no wait; the function begins the operation and hands the phases to an
    // asynchronous invocation of itself, which the lab's Lambda API queues and runs.
    const started = await invokeFunction(client, 'kdr-local-failover', { mode: 'planned' });
    expect(started.functionError, JSON.stringify(started.body)).toBeUndefined();
    expect(started.body).toMatchObject({ status: 'in-progress', continued: true });
    await eventually(
      'the failover finished in its continuation',
      () => lab!.api.asyncOutcomes('failover').length > 0,
      300_000,
    );
    const continuation = lab.api.asyncOutcomes('failover')[0]!;
    expect(continuation.outcome, JSON.stringify(continuation.result)).toBe('ok');
    expect(continuation.result).toMatchObject({ mode: 'planned', from: 'primary', to: 'standby', epoch: 2 });
    const after = JSON.parse((await runKdr(['status', '--json'], { env })).stdout);
    expect(after.control).toMatchObject({ state: 'FAILED_OVER', activeCluster: 'standby' });
    // Disabling until the poller's invocation in flight (or its retry's wait) ends, then Disabled.
    expect(await mappingStates(client, 'kdr-local-mirror')).toEqual([expect.stringMatching(/^Disabl/)]);
    await eventually(
      'the event source is disabled',
      async () => (await mappingStates(client, 'kdr-local-mirror'))[0] === 'Disabled',
      60_000,
    );
    expect([...(await describeGroup('standby', group, topic)).entries()].sort()).toEqual([
      [0, 120],
      [1, 300],
    ]);

    const back = await invokeFunction(client, 'kdr-local-failback', {});
    expect(back.functionError, JSON.stringify(back.body)).toBeUndefined();
    await eventually(
      'the failback finished in its continuation',
      () => lab!.api.asyncOutcomes('failback').length > 0,
      300_000,
    );
    const backOutcome = lab.api.asyncOutcomes('failback')[0]!;
    expect(backOutcome.outcome, JSON.stringify(backOutcome.result)).toBe('ok');
    expect(backOutcome.result).toMatchObject({ from: 'standby', to: 'primary' });
    await eventually(
      'the event source is enabled again',
      async () => (await mappingStates(client, 'kdr-local-mirror'))[0] === 'Enabled',
      60_000,
    );
    // Re-enabled, the event source mirrors what the primary gets next, from the committed offsets.
    await produce(topic, 2, 50, 'after');
    await eventually('the event source delivered the new records', () => caughtUp(source), 120_000);
    const compared = await compareClusters([topic]);
    expect(compared.problems).toEqual([]);
    expect(compared.records).toBe(700);
    // A failed asynchronous invocation goes to the function's dead-letter queue once its retries (0
    // for failover) are spent, with Lambda's attributes.
    const bad = { mode: 'sideways', note: uniqueName('dead-letter') };
    await client.send(
      new InvokeCommand({
        FunctionName: 'kdr-local-failover',
        InvocationType: 'Event',
        Payload: Buffer.from(JSON.stringify(bad)),
      }),
    );
    await eventually(
      'the failed event was handled',
      () => lab!.api.asyncOutcomes('failover').length === 2,
      60_000,
    );
    expect(lab.api.asyncOutcomes('failover')[1]).toMatchObject({
      outcome: 'error',
      attempts: 1,
      deadLetter: 'sent',
    });
    const sqs = labSqsClient();
    try {
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: 'kdr-local-dead-letters' }));
      let found: { Body?: string; MessageAttributes?: Record<string, { StringValue?: string }> } | undefined;
      await eventually('the event is in the dead-letter queue', async () => {
        const { Messages } = await sqs.send(
          new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'] }),
        );
        found ??= Messages?.find((m) => m.Body?.includes(bad.note));
        return found !== undefined;
      });
      expect(JSON.parse(found!.Body!)).toEqual(bad);
      expect(found!.MessageAttributes?.ErrorMessage?.StringValue).toContain('malformed failover request');
    } finally {
      sqs.destroy();
    }

    // The switch was the functions' own calls, made under their roles (checked after the test).
    const iam = await labIamCheck(lab);
    expect(iam.byFunction).toMatchObject({ failover: expect.any(Number), failback: expect.any(Number) });
  });
});

describe('schedules and self-invocation through the lab', () => {
  it('the checkpoint and snapshot schedules fire from the template; a restore continues itself until done', {
    timeout: 600_000,
  }, async () => {
    const { topic, group, env } = ownDrillPair('esm-sched');
    await createTopics('primary', [{ topic, numPartitions: 3 }]);
    await produce(topic, 3, 4000, 'kept');
    await commitGroupOffsets('primary', group, topic, [1000, 2000, 3000]);
    // The snapshot's rate is a deploy param (1 hour by default): 1 minute here, as the checkpoint's.
    // The restore function's timeout is cut to 16 s (it keeps 15 s in hand), so that it must go on in
    // asynchronous invocations of itself.
    lab = await startLambdaLab({
      topic,
      pair: env.KDR_PAIR,
      environment: env,
      params: ['snapshotRate=1 minute', 'checkpointRate=1 minute'],
      overrides: { restore: { timeoutSeconds: 16 } },
    });
    expect(lab.schedules.map((s) => s.expression)).toEqual(['rate(1 minute)', 'rate(1 minute)']);
    await eventually(
      'the checkpoint and snapshot schedules fired',
      () => lab!.api.asyncOutcomes('checkpoint').length > 0 && lab!.api.asyncOutcomes('snapshot').length > 0,
      150_000,
    );
    for (const name of ['checkpoint', 'snapshot']) {
      const [fired] = lab.api.asyncOutcomes(name);
      expect(fired!.outcome, `${name}: ${JSON.stringify(fired!.result)}`).toBe('ok');
      // What EventBridge gives a schedule's target.
      expect(fired!.payload).toMatchObject({ source: 'aws.events', 'detail-type': 'Scheduled Event' });
    }
    const status = JSON.parse((await runKdr(['status', '--json'], { env })).stdout);
    expect(status.checkpoint.at).not.toBeNull();
    // The scheduled snapshot holds every record (they were all written before the lab started).
    const snapshot = lab.api.asyncOutcomes('snapshot')[0]!.result as {
      status: string;
      snapshotId: string;
      records: number;
    };
    expect(snapshot).toMatchObject({ status: 'complete', records: 12_000 });

    const client = labLambdaClient(lab);
    const started = await invokeFunction(client, 'kdr-local-restore', {
      snapshotId: snapshot.snapshotId,
      target: 'standby',
      topicPrefix: 'restored.',
    });
    expect(started.functionError, JSON.stringify(started.body)).toBeUndefined();
    expect(started.body).toMatchObject({ status: 'in-progress', continued: true });
    await eventually(
      'the restore completed in a continuation',
      () =>
        lab!.api
          .asyncOutcomes('restore')
          .some((o) => (o.result as { status?: string })?.status === 'complete'),
      300_000,
    );
    const restores = lab.api.asyncOutcomes('restore');
    expect(
      restores.every((o) => o.outcome === 'ok'),
      JSON.stringify(restores.map((o) => o.result)),
    ).toBe(true);
    const restored = await readWithKcat('standby', `restored.${topic}`);
    const source = await readWithKcat('primary', topic);
    const values = (rs: { partition: number; value: Buffer | null }[]) =>
      rs.map((r) => `${r.partition}:${r.value?.toString()}`).sort();
    expect(values(restored)).toEqual(values(source.filter((r) => r.offset < 4000)));
  });
});

describe('kdr lab up --lambda', () => {
  it('runs the packaged stack beside the lab, shows it in lab status, kills containers and stops', {
    timeout: 600_000,
  }, async () => {
    const { topic, env } = ownDrillPair('esm-cli');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    const refused = await runKdr(['lab', 'up', '--lambda-param', `topics=${topic}`]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('--lambda-param is for --lambda');
    const badParam = await runKdr(['lab', 'up', '--lambda', '--lambda-param', 'topics']);
    expect(badParam.stderr).toContain('expected name=value');

    const up = await runKdr(
      [
        'lab',
        'up',
        '--lambda',
        '--lambda-param',
        `topics=${topic}`,
        '--lambda-param',
        `pair=${env.KDR_PAIR}`,
        '--json',
      ],
      { timeoutMs: 400_000 },
    );
    try {
      expect(up.exitCode, up.stderr.slice(-2000)).toBe(0);
      const status = JSON.parse(up.stdout);
      expect(status.lambda).toMatchObject({ running: true, answering: true });
      expect(status.lambda.report.functions.map((f: { name: string }) => f.name).sort()).toEqual([
        'checkpoint',
        'failback',
        'failover',
        'mirror',
        'restore',
        'snapshot',
        'status',
      ]);
      expect(status.lambda.report.mappings).toMatchObject([{ Topics: [topic] }]);
      // The same command again is a no-op; other params are refused while it runs.
      const again = await runKdr([
        'lab',
        'up',
        '--lambda',
        '--lambda-param',
        `topics=${topic}`,
        '--lambda-param',
        `pair=${env.KDR_PAIR}`,
      ]);
      expect(again.exitCode, again.stderr).toBe(0);
      const other = await runKdr(['lab', 'up', '--lambda', '--lambda-param', 'topics=elsewhere']);
      expect(other.stderr).toContain('kdr lab stop-lambda');

      const lambdaStatus = async () => JSON.parse((await runKdr(['lab', 'status', '--json'])).stdout).lambda;
      await produce(topic, 2, 100, 'cli');
      await eventually(
        'the mapping delivered 200 records',
        async () => (await lambdaStatus()).report.mappings[0].records === 200,
        120_000,
      );
      expect((await compareClusters([topic])).problems).toEqual([]);

      const mirror = (s: {
        report: { functions: { name: string; coldStarts: number; idle: number; busy: number }[] };
      }) => s.report.functions.find((f) => f.name === 'mirror')!;
      const before = mirror(await lambdaStatus());
      expect(before.idle + before.busy).toBeGreaterThan(0);
      const killed = await runKdr(['lab', 'kill-function', 'mirror', '--json']);
      expect(JSON.parse(killed.stdout)).toMatchObject({
        function: 'mirror',
        killed: before.idle + before.busy,
      });
      await produce(topic, 2, 10, 'cold');
      await eventually(
        'the mapping delivered the new records',
        async () => (await lambdaStatus()).report.mappings[0].records === 220,
        120_000,
      );
      // The next invocations started cold, in new containers.
      expect(mirror(await lambdaStatus()).coldStarts).toBeGreaterThan(before.coldStarts);
      expect((await compareClusters([topic])).problems).toEqual([]);
    } finally {
      // The worst case: the process that started the containers is SIGKILLed, leaving them running.
      const pid = JSON.parse(up.stdout || '{}').lambda?.pid as number | undefined;
      const under = pid ? descendants(pid) : [];
      if (pid) process.kill(pid, 'SIGKILL');
      const stopped = await runKdr(['lab', 'stop-lambda', '--json']);
      expect(stopped.stderr).toMatch(/killed \d+ Lambda container process\(es\) left behind/);
      expect(JSON.parse(stopped.stdout)).toEqual({ stopped: true });
      // Nothing of it is left: the process, its emulators and their runtimes.
      expect([pid, ...under].filter((p): p is number => p !== undefined && isAlive(p))).toEqual([]);
      expect(processesWithEnvironment(`${LAMBDA_CONTAINER_MARK}=${labPaths().root}`)).toEqual([]);
      expect(JSON.parse((await runKdr(['lab', 'status', '--json'])).stdout).lambda).toBeNull();
    }
  });
});
