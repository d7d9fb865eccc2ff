import { setTimeout as sleep } from 'node:timers/promises';
import type { Kafka } from 'kafkajs';
import { KafkaAdmin } from '../../src/adapters/kafka/admin.ts';
import { KafkaPartitionReader } from '../../src/adapters/kafka/partitionReader.ts';
import { LabError } from '../../src/errors.ts';
import { type EventRecord, eventRecord } from '../../src/events/kafkaEvent.ts';
import type { PartitionReader } from '../../src/ports/kafka.ts';
import type { Stack } from '../aws/stackIam.ts';
import type { MappingControl, MappingReport, MappingState } from './lambdaApi.ts';
import type { Invocation } from './lambdaRuntime.ts';

/**
 * The Lambda Kafka event source mapping, in the lab: it polls the primary for one mapping's topic and
 * invokes the function as the managed poller does. Each behaviour copied is cited next to its code;
 * where the lab differs, the comment says so.
 *
 * Event sources: https://docs.aws.amazon.com/lambda/latest/dg/with-kafka.html (self-managed) and
 * https://docs.aws.amazon.com/lambda/latest/dg/with-msk.html (MSK).
 */

/** One mapping as the packaged template defines it. */
export interface MappingDefinition {
  logicalId: string;
  /** The function it invokes (the resolved template's FunctionName: an ARN). */
  functionArn: string;
  kind: 'SelfManagedKafka' | 'aws:kafka';
  eventSourceArn?: string;
  bootstrapServers: string[];
  topic: string;
  batchSize: number;
  batchingWindowSeconds: number;
  startingPosition: 'TRIM_HORIZON' | 'LATEST';
  consumerGroupId?: string;
  enabled: boolean;
}

/**
 * Lambda's defaults for Kafka mappings: BatchSize 100; a batching window of 500 ms when none is set
 * (https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventsourcemapping.html#invocation-eventsourcemapping-batching).
 */
export const DEFAULT_BATCH_SIZE = 100;
export const DEFAULT_BATCHING_WINDOW_SECONDS = 0.5;
/**
 * A synchronous invocation's payload is at most 6 MB, 6,291,456 bytes ("Request must be smaller than
 * 6291456 bytes for the InvokeFunction operation"): the poller invokes before a batch grows past it.
 */
export const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;

/** What the lab reads of AWS::Lambda::EventSourceMapping (resolved). */
interface MappingProperties {
  FunctionName: string;
  EventSourceArn?: string;
  SelfManagedEventSource?: { Endpoints?: { KafkaBootstrapServers?: string[] } };
  Topics?: string[];
  StartingPosition?: string;
  BatchSize?: number;
  MaximumBatchingWindowInSeconds?: number;
  Enabled?: boolean;
  SelfManagedKafkaEventSourceConfig?: { ConsumerGroupId?: string };
  AmazonManagedKafkaEventSourceConfig?: { ConsumerGroupId?: string };
}

function mskArn(logicalId: string, arn: string | undefined): string {
  if (!arn)
    throw new LabError(
      'LAB_STATE_CONFLICT',
      `${logicalId}: neither SelfManagedEventSource nor EventSourceArn`,
    );
  return arn;
}

/** The Kafka and MSK event source mappings of a packaged stack. */
export function mappingDefinitions(stack: Stack): MappingDefinition[] {
  const found: MappingDefinition[] = [];
  for (const [logicalId, resource] of Object.entries(stack.resources)) {
    if (resource.Type !== 'AWS::Lambda::EventSourceMapping') continue;
    const p = resource.Properties as unknown as MappingProperties;
    const selfManaged = p.SelfManagedEventSource?.Endpoints?.KafkaBootstrapServers as string[] | undefined;
    const topics = p.Topics as string[] | undefined;
    if (topics?.length !== 1)
      throw new LabError(
        'LAB_STATE_CONFLICT',
        `${logicalId}: a Kafka mapping reads exactly one topic, got ${JSON.stringify(topics)}`,
      );
    const startingPosition = p.StartingPosition ?? 'TRIM_HORIZON';
    if (startingPosition !== 'TRIM_HORIZON' && startingPosition !== 'LATEST')
      throw new LabError(
        'LAB_STATE_CONFLICT',
        `${logicalId}: the lab's event source starts at TRIM_HORIZON or LATEST, not ${startingPosition}`,
      );
    found.push({
      logicalId,
      functionArn: p.FunctionName,
      kind: selfManaged ? 'SelfManagedKafka' : 'aws:kafka',
      ...(selfManaged ? {} : { eventSourceArn: mskArn(logicalId, p.EventSourceArn) }),
      bootstrapServers: selfManaged ?? [],
      topic: topics[0]!,
      batchSize: p.BatchSize ?? DEFAULT_BATCH_SIZE,
      batchingWindowSeconds: p.MaximumBatchingWindowInSeconds ?? DEFAULT_BATCHING_WINDOW_SECONDS,
      startingPosition,
      consumerGroupId:
        p.SelfManagedKafkaEventSourceConfig?.ConsumerGroupId ??
        p.AmazonManagedKafkaEventSourceConfig?.ConsumerGroupId,
      enabled: p.Enabled !== false,
    });
  }
  return found;
}

/** The event of one batch of one partition ("topic-partition" keys; the lab's events hold one each). */
export function kafkaEvent(mapping: MappingDefinition, records: EventRecord[]) {
  const first = records[0];
  return {
    eventSource: mapping.kind,
    ...(mapping.eventSourceArn ? { eventSourceArn: mapping.eventSourceArn } : {}),
    bootstrapServers: mapping.bootstrapServers.join(','),
    records: first ? { [`${first.topic}-${first.partition}`]: records } : {},
  };
}

/**
 * The wait before retrying a failed batch: doubling from 1 s to at most 30 s. Lambda retries a failed
 * Kafka batch until it succeeds (no retry configuration: kdr never skips records)
 * (https://docs.aws.amazon.com/lambda/latest/dg/kafka-retry-configurations.html); AWS does not publish
 * its backoff, so the lab's is its own.
 */
export function retryDelayMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt - 1));
}

/** A new mapping's state as ListEventSourceMappings shows it, before its poller starts. */
export function initialMappingState(definition: MappingDefinition, uuid: string): MappingState {
  return {
    UUID: uuid,
    FunctionArn: definition.functionArn,
    Topics: [definition.topic],
    BatchSize: definition.batchSize,
    MaximumBatchingWindowInSeconds: definition.batchingWindowSeconds,
    StartingPosition: definition.startingPosition,
    State: definition.enabled ? 'Enabling' : 'Disabled',
    StateTransitionReason: 'USER_INITIATED',
    LastModified: Date.now() / 1000,
  };
}

export interface Invoker {
  invoke(functionName: string, payload: unknown): Promise<Invocation | 'throttled' | 'not-found'>;
}

export interface EventSourceOptions {
  /** How the primary is read (default: kdr's partition reader on the given client); drills wrap it. */
  reader?: PartitionReader;
  /** Drill: after every n-th successful batch, go back to the last committed offset once, uncommitted. */
  redeliverEvery?: number;
  log?: (line: string) => void;
}

export interface EventSourceStats {
  invocations: number;
  failures: number;
  redeliveries: number;
  records: number;
}

/**
 * The poller of one mapping. One loop per partition: a batch is gathered until BatchSize records, the
 * batching window (from the first record) or 6 MB, whichever comes first
 * (https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html), then the function
 * is invoked and the partition's next batch waits for its answer. "Lambda reads the messages
 * sequentially for each partition" (https://docs.aws.amazon.com/lambda/latest/dg/with-msk.html): the
 * lab holds one invocation in flight per partition, the strictest reading. "Lambda retries the whole
 * batch of messages until processing succeeds" (same page); "After Lambda processes each batch, it
 * commits the offsets of the messages in that batch" (with-kafka-configure.html), to the mapping's
 * ConsumerGroupId (kafka-consumer-group-id.html; Lambda makes a unique one when none is set: the lab
 * uses the mapping's UUID).
 * Where the lab differs: its events hold one partition each (Lambda's may hold several); it commits as
 * a group without members (it does not join the group); it reads the partitions the topic had when the
 * mapping was enabled.
 */
export class KafkaEventSource implements MappingControl {
  readonly stats: EventSourceStats = { invocations: 0, failures: 0, redeliveries: 0, records: 0 };
  private reader: PartitionReader | undefined;
  private admin: KafkaAdmin | undefined;
  private loops: Promise<void> | undefined;
  private active = false;
  private generation = 0;
  /** Ends a retry's wait when the mapping is disabled. */
  private stopping = new AbortController();
  private successes = 0;

  constructor(
    readonly definition: MappingDefinition,
    readonly state: MappingState,
    private readonly kafka: Kafka,
    private readonly functionName: string,
    private readonly invoker: Invoker,
    private readonly options: EventSourceOptions = {},
  ) {}

  describe(): Omit<MappingReport, keyof MappingState> {
    return { consumerGroupId: this.groupId, ...this.stats };
  }

  get groupId(): string {
    return this.definition.consumerGroupId ?? this.state.UUID;
  }

  /** UpdateEventSourceMapping Enabled: the state goes through Enabling/Disabling as Lambda's does. */
  setEnabled(enabled: boolean): void {
    this.state.LastModified = Date.now() / 1000;
    this.state.StateTransitionReason = 'USER_INITIATED';
    if (enabled && !this.active) {
      this.state.State = 'Enabling';
      this.start();
    } else if (!enabled && this.active) {
      this.state.State = 'Disabling';
      this.active = false;
      this.stopping.abort();
      const generation = this.generation;
      void this.loops?.then(() => {
        if (!this.active && this.generation === generation) this.state.State = 'Disabled';
      });
    }
  }

  /**
   * Runs the mapping. Each start is a generation: the loops of an earlier one end once their batch in
   * flight is answered (and committed), and the new one begins only then, so a partition never has two.
   */
  start(): void {
    const generation = ++this.generation;
    this.active = true;
    this.stopping = new AbortController();
    const previous = this.loops ?? Promise.resolve();
    this.loops = previous.then(() => this.runAll(generation));
  }

  private live(generation: number): boolean {
    return this.active && this.generation === generation;
  }

  /** Waits, cut short when the mapping is disabled. */
  private pause(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.stopping.signal }).catch(() => {});
  }

  /**
   * A problem reading or committing is not the end of the mapping: Lambda reports it in
   * LastProcessingResult and keeps polling
   * (https://docs.aws.amazon.com/lambda/latest/api/API_EventSourceMappingConfiguration.html).
   */
  private problem(error: unknown): void {
    this.state.LastProcessingResult = `PROBLEM: ${String(error)}`;
    this.options.log?.(`event source ${this.state.UUID}: ${String(error)}; trying again`);
  }

  private async runAll(generation: number): Promise<void> {
    this.reader ??= this.options.reader ?? new KafkaPartitionReader(this.kafka, 'primary');
    this.admin ??= new KafkaAdmin(this.kafka, 'primary');
    let positions: Map<number, number> | undefined;
    for (let attempt = 1; this.live(generation) && !positions; attempt++) {
      try {
        positions = await this.startingOffsets();
      } catch (error) {
        // A topic not created yet; a new group's coordinator still loading.
        this.problem(error);
        await this.pause(retryDelayMs(attempt));
      }
    }
    if (!positions || !this.live(generation)) return;
    this.state.State = 'Enabled';
    await Promise.all(
      [...positions].map(([partition, offset]) => this.partitionLoop(generation, partition, offset)),
    );
  }

  /**
   * Where each partition starts: the group's committed offset; without one, StartingPosition
   * (TRIM_HORIZON: "the oldest record in the topic"; LATEST: "just after the most recent record",
   * https://docs.aws.amazon.com/lambda/latest/dg/kafka-starting-positions.html). AWS does not say what
   * a committed offset below the log start does: the lab starts that partition at StartingPosition.
   */
  private async startingOffsets(): Promise<Map<number, number>> {
    const { topic } = this.definition;
    const offsets = await this.reader!.offsets(topic);
    const committed = await this.admin!.committedOffsets(this.groupId, [topic]);
    const byPartition = new Map(committed.map((c) => [c.partition, c.offset]));
    const positions = new Map<number, number>();
    for (const o of offsets) {
      const c = byPartition.get(o.partition) ?? -1;
      const fallback = this.definition.startingPosition === 'LATEST' ? o.highWatermark : o.logStart;
      positions.set(o.partition, c >= o.logStart ? c : fallback);
    }
    return positions;
  }

  private async partitionLoop(generation: number, partition: number, from: number): Promise<void> {
    let position = from;
    let committed = from;
    for (let failures = 0; this.live(generation); ) {
      try {
        const batch = await this.gather(generation, partition, position);
        if (batch.records.length === 0) {
          position = batch.next;
          continue;
        }
        if (!(await this.deliver(generation, batch.records))) return;
        const redeliver = this.options.redeliverEvery && ++this.successes % this.options.redeliverEvery === 0;
        if (redeliver && committed < batch.next) {
          // As after a poller restart or a rebalance before the commit: the same records come again.
          this.stats.redeliveries++;
          position = committed;
          continue;
        }
        await this.commit(partition, batch.next);
        committed = batch.next;
        position = batch.next;
        failures = 0;
        this.state.LastProcessingResult = 'OK';
      } catch (error) {
        // From the last commit again: what was delivered and not committed comes again (at least once).
        this.problem(error);
        position = committed;
        await this.pause(retryDelayMs(++failures));
      }
    }
  }

  /** Records from `from` until BatchSize, the batching window (from the first record) or 6 MB. */
  private async gather(
    generation: number,
    partition: number,
    from: number,
  ): Promise<{ records: EventRecord[]; next: number }> {
    const { topic, batchSize, batchingWindowSeconds } = this.definition;
    const records: EventRecord[] = [];
    let bytes = JSON.stringify(kafkaEvent(this.definition, [])).length;
    let next = from;
    let windowEnds: number | undefined;
    while (this.live(generation) && records.length < batchSize) {
      const wait = windowEnds === undefined ? 500 : windowEnds - Date.now();
      if (wait <= 0) break;
      const fetched = await this.reader!.fetch({ topic, partition }, next, {
        maxWaitMs: Math.min(wait, 500),
      });
      for (const r of fetched.records) {
        const record = eventRecord(topic, partition, r);
        const size = JSON.stringify(record).length + 1;
        if (records.length >= batchSize || (records.length > 0 && bytes + size > MAX_PAYLOAD_BYTES))
          return { records, next: r.offset };
        records.push(record);
        bytes += size;
        next = r.offset + 1;
      }
      // Past every batch returned, control and aborted ones included.
      next = Math.max(next, fetched.nextOffset);
      if (records.length > 0) windowEnds ??= Date.now() + batchingWindowSeconds * 1000;
      if (records.length === 0 && windowEnds === undefined) break;
    }
    return { records, next };
  }

  /**
   * Invokes until the function succeeds (true), the batch the same on every attempt; false when the
   * mapping was disabled meanwhile: the batch is left uncommitted, to be read again once enabled.
   */
  private async deliver(generation: number, records: EventRecord[]): Promise<boolean> {
    const event = kafkaEvent(this.definition, records);
    for (let attempt = 1; ; attempt++) {
      this.stats.invocations++;
      const result = await this.invoker.invoke(this.functionName, event);
      if (typeof result === 'object' && result.outcome === 'ok') {
        this.stats.records += records.length;
        return true;
      }
      this.stats.failures++;
      const why =
        typeof result === 'string'
          ? result
          : result.outcome === 'error'
            ? `${result.errorType}: ${result.errorMessage}`
            : result.message;
      this.options.log?.(
        `batch of ${records.length} from ${records[0]!.topic}-${records[0]!.partition}@${records[0]!.offset} failed (${why}); retrying`,
      );
      if (result === 'not-found')
        throw new LabError('LAB_STATE_CONFLICT', `function ${this.functionName} not found`);
      await this.pause(retryDelayMs(attempt));
      if (!this.live(generation)) return false;
    }
  }

  /**
   * The group's offset after a success: an OffsetCommit outside the group (kdr's admin adapter, which
   * retries what Kafka calls retriable).
   */
  private commit(partition: number, offset: number): Promise<void> {
    return this.admin!.commitOffsets(this.groupId, [{ topic: this.definition.topic, partition, offset }]);
  }

  async close(): Promise<void> {
    this.active = false;
    this.stopping.abort();
    await this.loops;
    await Promise.allSettled([this.reader?.close(), this.admin?.close()]);
  }
}
