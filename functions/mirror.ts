import { inFunction } from '../src/adapters/aws/callLog.ts';
import { loadConfig } from '../src/config.ts';
import { parseKafkaEvent } from '../src/events/kafkaEvent.ts';
import { lambdaCredentials } from '../src/lambda.ts';
import { createLogger } from '../src/logger.ts';
import { emitMetrics } from '../src/metrics.ts';
import { createRuntime, type Runtime } from '../src/runtime.ts';
import { mirrorEvent } from '../src/services/mirrorEvent.ts';

/**
 * Lambda handler for the Kafka event source (MSK or self-managed). Parses the event, mirrors every
 * partition batch exactly once, and fails the invocation if any batch could not be mirrored, so that the
 * event source delivers it again.
 */

const config = loadConfig();
const logger = createLogger(config.logLevel, { function: 'mirror', pair: config.pair });
const credentials = lambdaCredentials(config);
let runtime: Runtime | undefined;

async function handle(event: unknown) {
  const batches = parseKafkaEvent(event);
  runtime ??= createRuntime(await credentials(), logger);
  const result = await mirrorEvent(runtime, batches, {
    refetch: config.mirror.lambdaRefetch,
    concurrency: config.mirror.partitionConcurrency,
  });
  emitMetrics(
    'kdr',
    { Pair: config.pair },
    { RecordsMirrored: { value: result.recordsMirrored, unit: 'Count' } },
  );
  for (const p of result.partitions) {
    if (p.lagOffsets !== undefined) {
      emitMetrics(
        'kdr',
        { Pair: config.pair, Topic: p.source.topic, Partition: String(p.source.partition) },
        { ReplicationLagRecords: { value: p.lagOffsets, unit: 'Count' } },
      );
    }
  }
  logger.info('mirrored', {
    records: result.recordsMirrored,
    partitions: result.partitions.length,
    skippedTopics: result.skippedTopics,
  });
  return {
    recordsMirrored: result.recordsMirrored,
    partitions: result.partitions.map((p) => ({
      topic: p.source.topic,
      partition: p.source.partition,
      mirrored: p.mirrored,
      alreadyMirrored: p.alreadyMirrored,
      lastMirrored: p.lastMirrored,
    })),
    skippedTopics: result.skippedTopics,
  };
}

/** The Lambda entry point: the AWS calls it makes are attributed to the mirror function's role. */
export const handler = inFunction('mirror', handle);
