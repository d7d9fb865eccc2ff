import { describe, expect, it } from 'vitest';
import { planTopicSync, type TopicState, topicSelector } from '../../../src/core/topicSync.ts';

const topic = (
  name: string,
  partitions: number,
  configs: Record<string, string> = {},
  extra: Partial<TopicState> = {},
): TopicState => ({
  name,
  partitions,
  replicationFactor: 3,
  internal: false,
  configs: {
    'max.message.bytes': { value: '1048588', explicit: false },
    'cleanup.policy': { value: 'delete', explicit: false },
    ...Object.fromEntries(Object.entries(configs).map(([k, v]) => [k, { value: v, explicit: true }])),
  },
  ...extra,
});

const owned = {
  'max.message.bytes': '1049612',
  'message.timestamp.type': 'CreateTime',
  'message.timestamp.before.max.ms': '9223372036854775807',
  'message.timestamp.after.max.ms': '9223372036854775807',
};

describe('planTopicSync', () => {
  it('creates selected topics with the same partitions and the configs that matter', () => {
    const plan = planTopicSync({
      source: [
        topic('orders', 6, {
          'cleanup.policy': 'compact',
          'retention.ms': '1000',
          'min.insync.replicas': '2',
        }),
        topic('__consumer_offsets', 50, {}, { internal: true }),
        topic('__transaction_state', 50),
        topic('logs', 1),
      ],
      standby: [],
      select: topicSelector('orders|__.*'),
      standbyBrokers: 1,
    });
    expect(plan.selected).toEqual(['orders']);
    expect(plan.create).toEqual([
      {
        topic: 'orders',
        partitions: 6,
        replicationFactor: 1,
        configs: { 'cleanup.policy': 'compact', 'retention.ms': '1000', ...owned },
      },
    ]);
  });

  it('leaves room for provenance headers above the source size limit', () => {
    const plan = planTopicSync({
      source: [topic('big', 1, { 'max.message.bytes': '5000000' })],
      standby: [],
      select: () => true,
      standbyBrokers: 3,
    });
    expect(plan.create[0]!.configs['max.message.bytes']).toBe('5001024');
  });

  it('never lowers the standby size limit: a limit raised there survives every sync', () => {
    const raised = { ...owned, 'max.message.bytes': '8000000' };
    const plan = planTopicSync({
      source: [topic('orders', 1)],
      standby: [topic('orders', 1, raised)],
      select: () => true,
      standbyBrokers: 1,
    });
    expect(plan.alterConfigs).toEqual([]);
    // The source's limit lowered after it took bigger records: the standby keeps room for them.
    const lowered = planTopicSync({
      source: [topic('orders', 1, { 'max.message.bytes': '500000', 'retention.ms': '1' })],
      standby: [topic('orders', 1, { ...owned, 'max.message.bytes': '2001024' })],
      select: () => true,
      standbyBrokers: 1,
    });
    expect(lowered.alterConfigs).toEqual([
      {
        topic: 'orders',
        configs: { 'retention.ms': '1', ...owned, 'max.message.bytes': '2001024' },
        changed: ['retention.ms'],
      },
    ]);
  });

  it('raises a standby size limit below the source limit plus headroom', () => {
    const plan = planTopicSync({
      source: [topic('orders', 1, { 'max.message.bytes': '3000000' })],
      standby: [topic('orders', 1, { ...owned, 'max.message.bytes': '1000' })],
      select: () => true,
      standbyBrokers: 1,
    });
    expect(plan.alterConfigs).toEqual([
      {
        topic: 'orders',
        configs: { ...owned, 'max.message.bytes': '3001024' },
        changed: ['max.message.bytes'],
      },
    ]);
    // An unparsable value is no floor.
    const junk = planTopicSync({
      source: [topic('orders', 1)],
      standby: [topic('orders', 1, { ...owned, 'max.message.bytes': 'junk' })],
      select: () => true,
      standbyBrokers: 1,
    });
    expect(junk.alterConfigs[0]!.configs['max.message.bytes']).toBe('1049612');
  });

  it('propagates partition increases and config changes, keeping operator overrides', () => {
    const plan = planTopicSync({
      source: [topic('orders', 8, { 'retention.ms': '2000' })],
      standby: [topic('orders', 6, { 'retention.ms': '1000', 'min.insync.replicas': '2', ...owned })],
      select: () => true,
      standbyBrokers: 3,
    });
    expect(plan.addPartitions).toEqual([{ topic: 'orders', from: 6, to: 8 }]);
    expect(plan.alterConfigs).toEqual([
      {
        topic: 'orders',
        configs: { 'min.insync.replicas': '2', 'retention.ms': '2000', ...owned },
        changed: ['retention.ms'],
      },
    ]);
  });

  it('changes nothing when the standby is in sync, and never shrinks', () => {
    const plan = planTopicSync({
      source: [topic('orders', 2, { 'retention.ms': '1' })],
      standby: [topic('orders', 4, { 'retention.ms': '1', ...owned })],
      select: () => true,
      standbyBrokers: 3,
    });
    expect(plan.create).toEqual([]);
    expect(plan.alterConfigs).toEqual([]);
    expect(plan.addPartitions).toEqual([]);
    expect(plan.warnings[0]).toContain('partitions are never removed');
  });

  it('removes an override the source dropped', () => {
    const plan = planTopicSync({
      source: [topic('orders', 1)],
      standby: [topic('orders', 1, { 'retention.ms': '1', ...owned })],
      select: () => true,
      standbyBrokers: 1,
    });
    expect(plan.alterConfigs[0]!.changed).toEqual(['retention.ms']);
    expect(plan.alterConfigs[0]!.configs).toEqual(owned);
  });
});
