import { afterAll, expect, it } from 'vitest';
import { commitGroupOffsets, createTopics, kafkaFor, uniqueName } from '../../helpers/lab.ts';
import { copiesOn, describeGroup } from '../../helpers/operations.ts';

/**
 * The failover and failback functions invoked with a timeoutSeconds far longer than the invocation can
 * run: each says so, works until its own deadline, and returns "in-progress" with the operation id; the
 * next invocation with that id resumes the same operation (in AWS the function invokes itself) until done.
 */

const topic = uniqueName('fnbudget-t');
const group = uniqueName('fnbudget-g');
const env = {
  KDR_PAIR: uniqueName('fnbudget-pair'),
  KDR_TOPICS: topic,
  KDR_GROUPS: group,
  KDR_MIRROR_GROUP_ID: uniqueName('fnbudget-mirror'),
  // Small transactions: the drain takes longer than one invocation's budget.
  KDR_MIRROR_MAX_TRANSACTION_RECORDS: '20',
};
const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
Object.assign(process.env, env);
afterAll(() => {
  for (const [key, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

const RECORDS = 4000;
/** 15 s are kept for the hand-over, so each invocation may work for 6 s. */
const context = () => {
  const end = Date.now() + 21_000;
  return { getRemainingTimeInMillis: () => end - Date.now() };
};

async function produce(cluster: 'primary' | 'standby', prefix: string) {
  const producer = kafkaFor(cluster).producer({ idempotent: true });
  await producer.connect();
  for (let i = 0; i < RECORDS; i += 500)
    await producer.send({
      topic,
      messages: Array.from({ length: 500 }, (_, j) => ({ partition: 0, value: `${prefix}-${i + j}` })),
    });
  await producer.disconnect();
}

type Handler = (event: unknown, context?: unknown) => Promise<any>;

/** Invokes until done, as the function's own continuations would; returns every answer. */
async function untilDone(handler: Handler, first: Record<string, unknown>) {
  const answers = [await handler(first, context())];
  for (let i = 0; answers.at(-1).status === 'in-progress' && i < 40; i++)
    answers.push(await handler({ timeoutSeconds: 900, operationId: answers.at(-1).operationId }, context()));
  return answers;
}

it('failover and failback functions clamp a timeout longer than their own, and resume in the next invocation', {
  timeout: 600_000,
}, async () => {
  const { handler: failover } = (await import('../../../functions/failover.ts')) as { handler: Handler };
  const { handler: failback } = (await import('../../../functions/failback.ts')) as { handler: Handler };
  await createTopics('primary', [{ topic, numPartitions: 1 }]);
  await produce('primary', 'p');
  // An application group that had read 700 records: it must land exactly, through both operations.
  await commitGroupOffsets('primary', group, topic, [700]);

  const over = await untilDone(failover, { mode: 'planned', timeoutSeconds: 900 });
  expect(over[0].status).toBe('in-progress');
  expect(over[0].warnings.join(' ')).toMatch(
    /timeoutSeconds 900 is longer than this invocation can run \(\d s left before its own timeout\)/,
  );
  expect(new Set(over.map((a) => a.operationId)).size).toBe(1);
  expect(over.length).toBeGreaterThan(1);
  expect(over.at(-1)).toMatchObject({ status: 'done', rpo: { records: 0 } });
  // A retried continuation of a finished operation returns its report; it starts nothing.
  const retried = await failover({ operationId: over[0].operationId }, context());
  expect(retried).toMatchObject({
    status: 'done',
    operationId: over[0].operationId,
    epoch: over.at(-1).epoch,
  });
  const forward = await copiesOn('standby', topic, 0);
  expect(forward.map((c) => c.src)).toEqual(Array.from({ length: RECORDS }, (_, i) => i));
  // Kafka's own tool: the group's next record on the standby is the copy of primary offset 700.
  const copyOf700 = forward.find((c) => c.src === 700)!.offset;
  expect((await describeGroup('standby', group, topic)).get(0)).toBe(copyOf700);

  await produce('standby', 's');
  const back = await untilDone(failback, { timeoutSeconds: 900 });
  expect(back[0].status).toBe('in-progress');
  expect(back[0].warnings.join(' ')).toMatch(/timeoutSeconds 900 is longer than this invocation can run/);
  expect(new Set(back.map((a) => a.operationId)).size).toBe(1);
  expect(back.at(-1)).toMatchObject({ status: 'done', mirroredBack: RECORDS });
  const onPrimary = await copiesOn('primary', topic, 0);
  const originals = (await copiesOn('standby', topic, 0)).filter((c) => c.src === null).map((c) => c.offset);
  expect(onPrimary.filter((c) => c.src !== null).map((c) => c.src)).toEqual(originals);
  // Back on the primary, the group is where it was before the failover: its next record is offset 700.
  expect((await describeGroup('primary', group, topic)).get(0)).toBe(700);
});
