import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.ts';
import { createRuntime } from '../../src/runtime.ts';
import { config, createTopics, eventually, uniqueName, withAdmin } from '../helpers/lab.ts';

/** Topic sync against the lab: create, grow, re-configure standby topics; internal topics never. */

const rt = createRuntime(config, silentLogger);
afterAll(() => rt.close());

async function standbyTopic(topic: string) {
  const [state] = await rt.targetAdmin.describeTopics([topic]);
  return state;
}

describe('topic sync', () => {
  it('creates selected topics with the same partitions and the configs that matter', async () => {
    const topic = uniqueName('sync');
    await createTopics('primary', [
      {
        topic,
        numPartitions: 5,
        configEntries: [
          { name: 'cleanup.policy', value: 'compact,delete' },
          { name: 'retention.ms', value: '86400000' },
          { name: 'max.message.bytes', value: '2000000' },
          { name: 'message.timestamp.type', value: 'LogAppendTime' },
        ],
      },
    ]);
    const result = await rt.topicSync.sync([topic]);
    expect(result.create.map((c) => c.topic)).toEqual([topic]);
    const standby = (await standbyTopic(topic))!;
    expect(standby.partitions).toBe(5);
    expect(standby.configs['cleanup.policy']).toMatchObject({ value: 'compact,delete', explicit: true });
    expect(standby.configs['retention.ms']).toMatchObject({ value: '86400000', explicit: true });
    expect(standby.configs['max.message.bytes']?.value).toBe('2001024');
    // The source's timestamps are copied as they are, whatever the source's timestamp type.
    expect(standby.configs['message.timestamp.type']?.value).toBe('CreateTime');
    // A second sync has nothing to do.
    const again = await rt.topicSync.sync([topic]);
    expect([again.create, again.addPartitions, again.alterConfigs].flat()).toEqual([]);
  });

  it('propagates partition increases and config changes', async () => {
    const topic = uniqueName('sync-grow');
    await createTopics('primary', [{ topic, numPartitions: 2 }]);
    await rt.topicSync.sync([topic]);
    await withAdmin('primary', async (admin) => {
      await admin.createPartitions({ topicPartitions: [{ topic, count: 6 }] });
      await admin.alterConfigs({
        validateOnly: false,
        resources: [
          { type: 2, name: topic, configEntries: [{ name: 'retention.bytes', value: '123456789' }] },
        ],
      });
    });
    // An operator's own override on the standby survives the sync.
    await withAdmin('standby', (admin) =>
      admin.alterConfigs({
        validateOnly: false,
        resources: [
          {
            type: 2,
            name: topic,
            configEntries: [
              { name: 'min.insync.replicas', value: '1' },
              { name: 'max.message.bytes', value: '1049612' },
              { name: 'message.timestamp.type', value: 'CreateTime' },
              { name: 'message.timestamp.before.max.ms', value: '9223372036854775807' },
              { name: 'message.timestamp.after.max.ms', value: '9223372036854775807' },
            ],
          },
        ],
      }),
    );
    const result = await rt.topicSync.sync([topic]);
    expect(result.addPartitions).toEqual([{ topic, from: 2, to: 6 }]);
    expect(result.alterConfigs[0]?.changed).toEqual(['retention.bytes']);
    // A broker applies a config change once it has the metadata record: read until it shows.
    await eventually(
      'the standby broker shows the synced retention.bytes',
      async () => (await standbyTopic(topic))?.configs['retention.bytes']?.value === '123456789',
      30_000,
    );
    const standby = (await standbyTopic(topic))!;
    expect(standby.partitions).toBe(6);
    expect(standby.configs['retention.bytes']?.value).toBe('123456789');
    expect(standby.configs['min.insync.replicas']).toMatchObject({ value: '1', explicit: true });
  });

  it('never mirrors internal topics, and picks up new ones', async () => {
    const prefix = uniqueName('sync-sel');
    const selected = createRuntime(
      { ...config, topics: `${prefix}-.*|__consumer_offsets|__transaction_state` },
      silentLogger,
    );
    try {
      await createTopics('primary', [{ topic: `${prefix}-a`, numPartitions: 1 }]);
      const first = await selected.topicSync.sync();
      expect(first.selected).toEqual([`${prefix}-a`]);
      await createTopics('primary', [{ topic: `${prefix}-b`, numPartitions: 3 }]);
      const second = await selected.topicSync.sync();
      expect(second.selected).toEqual([`${prefix}-a`, `${prefix}-b`]);
      expect(second.create.map((c) => c.topic)).toEqual([`${prefix}-b`]);
      const names = await withAdmin('standby', (admin) => admin.listTopics());
      expect(names).toContain(`${prefix}-b`);
    } finally {
      await selected.close();
    }
  });
});
