/**
 * Which topics the standby needs, decided without I/O: topics selected on the source are created on the
 * standby with the same partition count and the configs that shape their data; partition increases and
 * config changes follow. Nothing is ever deleted or shrunk on the standby.
 */

export interface TopicConfigValue {
  value: string | null;
  /** Set on the topic itself (not inherited from a broker or a default). */
  explicit: boolean;
}

export interface TopicState {
  name: string;
  /** The topic's id (KIP-516), when the cluster reported one: a recreated topic has a new id. */
  topicId?: string;
  partitions: number;
  replicationFactor: number;
  internal: boolean;
  configs: Record<string, TopicConfigValue>;
}

/** Topic configs copied from source to standby when set on the source topic. */
export const SYNCED_CONFIGS = [
  'cleanup.policy',
  'retention.ms',
  'retention.bytes',
  'compression.type',
  'min.compaction.lag.ms',
  'max.compaction.lag.ms',
  'delete.retention.ms',
  'min.cleanable.dirty.ratio',
  'segment.ms',
  'segment.bytes',
] as const;

/** Room for the provenance headers kdr adds, so that a record at the source's size limit still fits. */
export const PROVENANCE_HEADROOM_BYTES = 1024;
const LONG_MAX = '9223372036854775807';
const DEFAULT_MAX_MESSAGE_BYTES = 1048588;

/**
 * Configs kdr owns on a standby topic: timestamps are always CreateTime (the source's timestamps are
 * copied, whatever its timestamp type) and never rejected for being old or ahead of the standby's clock,
 * and the size limit leaves room for provenance headers.
 *
 * The size limit is a floor, never lowered: a limit the operator raised on the standby topic is kept. It
 * is the way out when a record does not fit even compressed (a record written before the source's limit
 * was lowered, or one the source's producer compressed better than kdr does); the mirror's
 * RECORD_TOO_LARGE error says to raise it, and resetting it at the next sync would undo the fix.
 */
export function ownedConfigs(source: TopicState, standby?: TopicState): Record<string, string> {
  const maxMessageBytes = Number(source.configs['max.message.bytes']?.value ?? DEFAULT_MAX_MESSAGE_BYTES);
  const standbyConfig = standby?.configs['max.message.bytes'];
  const standbyLimit = standbyConfig?.explicit ? Number(standbyConfig.value) : Number.NaN;
  return {
    'max.message.bytes': String(
      Math.max(
        maxMessageBytes + PROVENANCE_HEADROOM_BYTES,
        Number.isSafeInteger(standbyLimit) ? standbyLimit : 0,
      ),
    ),
    'message.timestamp.type': 'CreateTime',
    'message.timestamp.before.max.ms': LONG_MAX,
    'message.timestamp.after.max.ms': LONG_MAX,
  };
}

/** The standby topic's explicit configs: the operator's own overrides kept, synced and owned ones set. */
export function desiredStandbyConfigs(source: TopicState, standby?: TopicState): Record<string, string> {
  const desired: Record<string, string> = {};
  const owned = ownedConfigs(source, standby);
  const managed = new Set<string>([...SYNCED_CONFIGS, ...Object.keys(owned)]);
  for (const [name, config] of Object.entries(standby?.configs ?? {})) {
    if (config.explicit && config.value !== null && !managed.has(name)) desired[name] = config.value;
  }
  for (const name of SYNCED_CONFIGS) {
    const config = source.configs[name];
    if (config?.explicit && config.value !== null) desired[name] = config.value;
  }
  return { ...desired, ...owned };
}

export interface TopicSyncPlan {
  create: { topic: string; partitions: number; replicationFactor: number; configs: Record<string, string> }[];
  addPartitions: { topic: string; from: number; to: number }[];
  alterConfigs: { topic: string; configs: Record<string, string>; changed: string[] }[];
  warnings: string[];
  /** Every selected source topic, created or not (what the mirror consumes). */
  selected: string[];
}

/** Internal topics (Kafka's own, and kdr's) are never mirrored, whatever the selection says. */
export function isInternalTopic(name: string, flagged = false): boolean {
  return flagged || name.startsWith('__') || name.startsWith('_kdr') || name.startsWith('kdr-internal');
}

export function topicSelector(regex: string): (name: string) => boolean {
  const pattern = new RegExp(`^(?:${regex})$`);
  return (name) => pattern.test(name);
}

export function planTopicSync(input: {
  source: TopicState[];
  standby: TopicState[];
  select: (name: string) => boolean;
  standbyBrokers: number;
}): TopicSyncPlan {
  const standbyByName = new Map(input.standby.map((t) => [t.name, t]));
  const plan: TopicSyncPlan = { create: [], addPartitions: [], alterConfigs: [], warnings: [], selected: [] };
  for (const source of [...input.source].sort((a, b) => a.name.localeCompare(b.name))) {
    if (isInternalTopic(source.name, source.internal) || !input.select(source.name)) continue;
    plan.selected.push(source.name);
    const standby = standbyByName.get(source.name);
    const desired = desiredStandbyConfigs(source, standby);
    if (!standby) {
      plan.create.push({
        topic: source.name,
        partitions: source.partitions,
        replicationFactor: Math.max(1, Math.min(source.replicationFactor, input.standbyBrokers)),
        configs: desired,
      });
      continue;
    }
    if (source.partitions > standby.partitions) {
      plan.addPartitions.push({ topic: source.name, from: standby.partitions, to: source.partitions });
    } else if (source.partitions < standby.partitions) {
      plan.warnings.push(
        `${source.name}: the standby has ${standby.partitions} partitions, the source ${source.partitions}; partitions are never removed`,
      );
    }
    const current: Record<string, string> = {};
    for (const [name, config] of Object.entries(standby.configs)) {
      if (config.explicit && config.value !== null) current[name] = config.value;
    }
    const changed = [...new Set([...Object.keys(current), ...Object.keys(desired)])].filter(
      (name) => current[name] !== desired[name],
    );
    if (changed.length > 0)
      plan.alterConfigs.push({ topic: source.name, configs: desired, changed: changed.sort() });
  }
  return plan;
}

/**
 * Why a topic regex selected nothing, in words an operator can act on. kdr matches the regex against the
 * whole topic name (like MirrorMaker 2's `topics` setting), which is the usual surprise: the text says so,
 * suggests a regex that would select the topics the operator probably meant (those the regex matches a
 * part of), and names a few of the topics that exist, those first.
 */
export function emptySelectionMessage(input: {
  /** The regex as the operator gave it. */
  regex: string;
  /** How it was given: `--topics` or `KDR_TOPICS`. */
  option: string;
  /** Where topics were looked for: `on primary`, `in snapshot 20261124T193000Z-3fa9`. */
  where: string;
  /** The topic names there; internal ones are left out (they are never selected). */
  existing: readonly string[];
  /** How many topic names to show (default 10). */
  limit?: number;
}): { message: string; suggestion?: string; shown: string[]; count: number } {
  const limit = input.limit ?? 10;
  const names = [...new Set(input.existing)].filter((n) => !isInternalTopic(n)).sort();
  const quoted = JSON.stringify(input.regex);
  let partly: RegExp | undefined;
  try {
    partly = new RegExp(input.regex);
  } catch {
    partly = undefined;
  }
  const near = partly ? names.filter((n) => partly.test(n)) : [];
  const group = input.regex.includes('|') ? `(?:${input.regex})` : input.regex;
  const suggestion =
    near.length === 0
      ? undefined
      : [`${group}.*`, `.*${group}.*`].find((candidate) => names.some(topicSelector(candidate)));
  const example = near[0]
    ? `${quoted} does not match ${JSON.stringify(near[0])}`
    : '"orders" does not match "orders-eu" ("orders.*" does)';
  const shown = [...near, ...names.filter((n) => !near.includes(n))].slice(0, limit);
  const more = names.length - shown.length;
  const parts = [
    `${input.option} ${quoted} selects no topic ${input.where}: the regex must match the whole topic name (a full match, like MirrorMaker 2's topics setting), so ${example}.`,
  ];
  if (suggestion) {
    const count = names.filter(topicSelector(suggestion)).length;
    parts.push(
      `Did you mean ${JSON.stringify(suggestion)}? It selects ${count} topic${count === 1 ? '' : 's'}.`,
    );
  }
  parts.push(
    names.length === 0
      ? `There are no topics ${input.where} (internal topics are never selected).`
      : `Topics ${input.where}: ${shown.join(', ')}${more > 0 ? `, and ${more} more` : ''}.`,
  );
  return {
    message: parts.join(' '),
    ...(suggestion ? { suggestion } : {}),
    shown,
    count: names.length,
  };
}
