import kafkajs, { type Admin, type Kafka } from 'kafkajs';
import type { TopicState } from '../../core/topicSync.ts';
import type { TopicAdmin } from '../../ports/kafka.ts';
import { toKdrError } from './errors.ts';

const { ConfigResourceTypes } = kafkajs;
// DescribeConfigs config_source: 1 = set on the topic itself (DYNAMIC_TOPIC_CONFIG).
const TOPIC_CONFIG_SOURCE = 1;

/** Topic metadata, configs and changes through the kafkajs admin client of one cluster. */
export class KafkaTopicAdmin implements TopicAdmin {
  private admin?: Promise<Admin>;

  constructor(
    private readonly kafka: Kafka,
    private readonly clusterName: string,
  ) {}

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

  async describeTopics(names?: string[]): Promise<TopicState[]> {
    return this.run('describing topics', async (admin) => {
      const existing = await admin.listTopics();
      const wanted = names ? names.filter((n) => existing.includes(n)) : existing;
      if (wanted.length === 0) return [];
      const { topics } = await admin.fetchTopicMetadata({ topics: wanted });
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
          states.push({
            name: topic.name,
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
          waitForLeaders: true,
          topics: [
            {
              topic,
              numPartitions: partitions,
              replicationFactor,
              configEntries: Object.entries(configs).map(([name, value]) => ({ name, value })),
            },
          ],
        });
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

  async close(): Promise<void> {
    const admin = this.admin;
    this.admin = undefined;
    if (admin) await (await admin.catch(() => undefined))?.disconnect();
  }
}
