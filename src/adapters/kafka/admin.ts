import kafkajs, { type Admin, type Kafka } from 'kafkajs';
import pRetry from 'p-retry';
import type { TopicState } from '../../core/topicSync.ts';
import type { GroupAdmin, GroupOffsets, TopicAdmin } from '../../ports/kafka.ts';
import { createCluster, type KafkajsCluster } from './cluster.ts';
import { kafkaProtocolError, toKdrError } from './errors.ts';
import { fetchTopicIds } from './topicIds.ts';

const { ConfigResourceTypes } = kafkajs;
// DescribeConfigs config_source: 1 = set on the topic itself (DYNAMIC_TOPIC_CONFIG).
const TOPIC_CONFIG_SOURCE = 1;

/** Topics and consumer groups of one cluster through the kafkajs admin client. */
export class KafkaAdmin implements TopicAdmin, GroupAdmin {
  private admin?: Promise<Admin>;
  private cluster?: KafkajsCluster;
  private clusterConnecting?: Promise<KafkajsCluster>;

  constructor(
    private readonly kafka: Kafka,
    private readonly clusterName: string,
  ) {}

  /**
   * The low-level cluster, connected. Callers at once share one connect: a failover commits 16 groups
   * at a time, and kafkajs' broker pool connecting twice at once can drop the other's seed broker.
   */
  private connectedCluster(): Promise<KafkajsCluster> {
    this.clusterConnecting ??= (async () => {
      this.cluster ??= createCluster(this.kafka);
      await this.cluster.connect();
      return this.cluster;
    })().finally(() => {
      this.clusterConnecting = undefined;
    });
    return this.clusterConnecting;
  }

  private connected(): Promise<Admin> {
    this.admin ??= (async () => {
      const admin = this.kafka.admin();
      await admin.connect();
      return admin;
    })().catch((error) => {
      this.admin = undefined;
      throw toKdrError(error, `connecting to the ${this.clusterName} cluster`);
    });
    return this.admin;
  }

  private async run<T>(
    doing: string,
    fn: (admin: Admin) => Promise<T>,
    details: Record<string, unknown> = {},
  ): Promise<T> {
    const admin = await this.connected();
    try {
      return await fn(admin);
    } catch (error) {
      throw toKdrError(error, `${doing} on the ${this.clusterName} cluster`, details);
    }
  }

  async listTopics(): Promise<string[]> {
    return this.run('listing topics', async (admin) => (await admin.listTopics()).sort());
  }

  async partitionCounts(names: string[]): Promise<Map<string, number>> {
    if (names.length === 0) return new Map();
    return this.run('reading topic metadata', async (admin) => {
      const { topics } = await admin.fetchTopicMetadata({ topics: names });
      return new Map(topics.map((t) => [t.name, t.partitions.length]));
    });
  }

  async describeTopics(names?: string[]): Promise<TopicState[]> {
    return this.run('describing topics', async (admin) => {
      const existing = await admin.listTopics();
      const wanted = names ? names.filter((n) => existing.includes(n)) : existing;
      if (wanted.length === 0) return [];
      const { topics } = await admin.fetchTopicMetadata({ topics: wanted });
      const ids = await this.topicIds(wanted);
      const states: TopicState[] = [];
      for (let i = 0; i < topics.length; i += 100) {
        const chunk = topics.slice(i, i + 100);
        const { resources } = await admin.describeConfigs({
          includeSynonyms: false,
          resources: chunk.map((t) => ({ type: ConfigResourceTypes.TOPIC, name: t.name })),
        });
        for (const topic of chunk) {
          const resource = resources.find((r) => r.resourceName === topic.name);
          const configs: TopicState['configs'] = {};
          for (const entry of resource?.configEntries ?? []) {
            configs[entry.configName] = {
              value: entry.configValue,
              explicit: (entry as { configSource?: number }).configSource === TOPIC_CONFIG_SOURCE,
            };
          }
          const topicId = ids.get(topic.name);
          states.push({
            name: topic.name,
            ...(topicId ? { topicId } : {}),
            partitions: topic.partitions.length,
            replicationFactor: Math.max(1, ...topic.partitions.map((p) => p.replicas.length)),
            internal: topic.name.startsWith('__'),
            configs,
          });
        }
      }
      return states;
    });
  }

  /** Topic ids through kdr's own Metadata v12 request (kafkajs's stops before ids). */
  async topicIds(topics: string[]): Promise<Map<string, string>> {
    return fetchTopicIds(await this.connectedCluster(), topics);
  }

  async brokerCount(): Promise<number> {
    return this.run(
      'describing the cluster',
      async (admin) => (await admin.describeCluster()).brokers.length,
    );
  }

  async createTopic(
    topic: string,
    partitions: number,
    replicationFactor: number,
    configs: Record<string, string>,
  ) {
    await this.run(
      `creating topic ${topic}`,
      async (admin) => {
        // false when it already exists: another mirror created it first, which is fine.
        await admin.createTopics({
          waitForLeaders: false,
          topics: [
            {
              topic,
              numPartitions: partitions,
              replicationFactor,
              configEntries: Object.entries(configs).map(([name, value]) => ({ name, value })),
            },
          ],
        });
        // kafkajs's own waitForLeaders gives up on UNKNOWN_TOPIC_OR_PARTITION, which a broker answers
        // until the new topic's metadata has reached it: wait here, bounded.
        await pRetry(
          async () => {
            const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
            const ready = topics[0]?.partitions.filter((p) => p.leader >= 0).length ?? 0;
            if (ready < partitions)
              throw new Error(`${ready}/${partitions} partitions of ${topic} have a leader`);
          },
          { retries: 30, minTimeout: 100, maxTimeout: 1000 },
        );
      },
      { topic },
    );
  }

  async deleteTopic(topic: string): Promise<void> {
    await this.run(
      `deleting topic ${topic}`,
      async (admin) => {
        await admin.deleteTopics({ topics: [topic], timeout: 30_000 });
        // Deletion completes asynchronously: wait, bounded, until no broker lists the topic any more.
        await pRetry(
          async () => {
            if ((await admin.listTopics()).includes(topic)) throw new Error(`topic ${topic} is still listed`);
          },
          { retries: 30, minTimeout: 100, maxTimeout: 1000 },
        );
      },
      { topic },
    );
  }

  async addPartitions(topic: string, count: number): Promise<void> {
    await this.run(
      `adding partitions to ${topic}`,
      (admin) => admin.createPartitions({ topicPartitions: [{ topic, count }] }),
      {
        topic,
      },
    );
  }

  async alterConfigs(topic: string, configs: Record<string, string>): Promise<void> {
    await this.run(
      `changing the configs of ${topic}`,
      (admin) =>
        admin.alterConfigs({
          validateOnly: false,
          resources: [
            {
              type: ConfigResourceTypes.TOPIC,
              name: topic,
              configEntries: Object.entries(configs).map(([name, value]) => ({ name, value })),
            },
          ],
        }),
      { topic },
    );
  }

  async listGroups(): Promise<string[]> {
    return this.run('listing consumer groups', async (admin) =>
      (await admin.listGroups()).groups.map((g) => g.groupId).sort(),
    );
  }

  async committedOffsets(group: string, topics: string[]): Promise<GroupOffsets[]> {
    if (topics.length === 0) return [];
    return this.run(
      `reading the offsets of group ${group}`,
      async (admin) => {
        // No topics: kafkajs sends OffsetFetch (v3 and later) with a null topic list, and the coordinator
        // answers only the partitions the group committed. Naming the topics asked for every partition
        // of every selected topic, for every group: 400 groups over 1,000 partitions were 400,000
        // partitions encoded and decoded per checkpoint for 40,000 commits. Any broker with
        // transactions (0.11 and later) has v3.
        const wanted = new Set(topics);
        const result = await admin.fetchOffsets({ groupId: group, topics: [] });
        return result
          .filter((t) => wanted.has(t.topic))
          .flatMap((t) =>
            t.partitions
              .filter((p) => Number(p.offset) >= 0)
              .map((p) => ({ topic: t.topic, partition: p.partition, offset: Number(p.offset) })),
          );
      },
      { group },
    );
  }

  async groupState(group: string): Promise<string> {
    return this.run(
      `describing group ${group}`,
      async (admin) => (await admin.describeGroups([group])).groups[0]?.state ?? 'Dead',
      { group },
    );
  }

  /**
   * An OffsetCommit outside the group (generation -1, no member id), as Kafka's own admin client does;
   * the broker accepts it only while the group has no member. Callers check the group's state first.
   */
  async commitOffsets(group: string, offsets: GroupOffsets[]): Promise<void> {
    const byTopic = new Map<string, { partition: number; offset: string }[]>();
    for (const o of offsets)
      byTopic.set(o.topic, [
        ...(byTopic.get(o.topic) ?? []),
        { partition: o.partition, offset: String(o.offset) },
      ]);
    await this.run(
      `committing offsets of group ${group}`,
      () =>
        pRetry(
          async () => {
            const cluster = await this.connectedCluster();
            const coordinator = await cluster.findGroupCoordinator({ groupId: group });
            await coordinator.offsetCommit({
              groupId: group,
              groupGenerationId: -1,
              memberId: '',
              topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
            });
          },
          {
            retries: 5,
            minTimeout: 200,
            maxTimeout: 2000,
            shouldRetry: ({ error }) => kafkaProtocolError(error).retriable,
          },
        ),
      { group },
    );
  }

  async close(): Promise<void> {
    const admin = this.admin;
    const cluster = this.cluster;
    this.admin = undefined;
    this.cluster = undefined;
    if (admin) await (await admin.catch(() => undefined))?.disconnect();
    await cluster?.disconnect();
  }
}
