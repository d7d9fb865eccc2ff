import { isInternalTopic, planTopicSync, type TopicSyncPlan } from '../core/topicSync.ts';
import type { Logger } from '../logger.ts';
import type { TopicAdmin } from '../ports/kafka.ts';

export interface TopicSyncResult extends TopicSyncPlan {
  /** max.message.bytes of each selected topic on the standby after the sync. */
  standbyMaxMessageBytes: Record<string, number>;
}

/** Applies topic sync plans: create, grow, re-configure standby topics; never delete. */
export class TopicSyncService {
  constructor(
    private readonly source: TopicAdmin,
    private readonly standby: TopicAdmin,
    private readonly select: (name: string) => boolean,
    private readonly logger: Logger,
  ) {}

  /** Syncs every selected topic, or only `names` (a mirror seeing a topic for the first time). */
  async sync(names?: string[]): Promise<TopicSyncResult> {
    // Only the selected topics are described (with their configs), however many the cluster has.
    const wanted =
      names ?? (await this.source.listTopics()).filter((name) => !isInternalTopic(name) && this.select(name));
    const [source, standby, standbyBrokers] = await Promise.all([
      this.source.describeTopics(wanted),
      this.standby.describeTopics(wanted),
      this.standby.brokerCount(),
    ]);
    const plan = planTopicSync({ source, standby, select: this.select, standbyBrokers });
    for (const c of plan.create) {
      this.logger.info('creating standby topic', {
        topic: c.topic,
        partitions: c.partitions,
        replicationFactor: c.replicationFactor,
      });
      await this.standby.createTopic(c.topic, c.partitions, c.replicationFactor, c.configs);
    }
    for (const a of plan.addPartitions) {
      this.logger.info('adding standby partitions', { topic: a.topic, from: a.from, to: a.to });
      await this.standby.addPartitions(a.topic, a.to);
    }
    for (const a of plan.alterConfigs) {
      this.logger.info('syncing standby topic configs', { topic: a.topic, changed: a.changed });
      await this.standby.alterConfigs(a.topic, a.configs);
    }
    for (const warning of plan.warnings) this.logger.warn(warning);
    const standbyMaxMessageBytes: Record<string, number> = {};
    for (const topic of plan.selected) {
      const desired = [...plan.create, ...plan.alterConfigs].find((x) => x.topic === topic)?.configs[
        'max.message.bytes'
      ];
      const current = standby.find((t) => t.name === topic)?.configs['max.message.bytes']?.value;
      const value = Number(desired ?? current);
      if (Number.isFinite(value)) standbyMaxMessageBytes[topic] = value;
    }
    return { ...plan, standbyMaxMessageBytes };
  }

  /** Makes sure one topic exists on the standby; returns its max.message.bytes there. */
  async ensureTopic(topic: string): Promise<number | undefined> {
    const result = await this.sync([topic]);
    if (!result.selected.includes(topic)) {
      this.logger.warn('mirroring a topic outside the selection (KDR_TOPICS) because a batch of it arrived', {
        topic,
      });
    }
    return result.standbyMaxMessageBytes[topic];
  }
}
