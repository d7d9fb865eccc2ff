import { withProvenance } from './provenance.ts';
import { type OutgoingRecord, recordSize, type SourceRecord, type TopicPartition } from './records.ts';

/**
 * What to do with one batch of source records of one partition, decided without I/O: skip what the
 * standby already has (redelivered or overlapping batches), skip records that are proven copies of the
 * target cluster's own records (no cycles during failback), and cut the rest into transactions and
 * produce requests.
 */

export interface MirrorLimits {
  /** Most records in one standby transaction (bounds the offset-map entry and the transaction). */
  maxTransactionRecords: number;
  /** Most bytes in one produce request; a record bigger than this goes alone. */
  maxRequestBytes: number;
  /** Most bytes in one transaction (a record bigger than this goes alone); unbounded when absent. */
  maxTransactionBytes?: number;
}

export interface PlannedTransaction {
  /** Produce requests of this transaction, in order; each becomes one record batch on the standby. */
  requests: OutgoingRecord[][];
  firstSource: number;
  lastSource: number;
  records: number;
}

export interface MirrorPlan {
  source: TopicPartition;
  transactions: PlannedTransaction[];
  /** Records at or below the last mirrored offset: already on the standby. */
  alreadyMirrored: number;
  /** Records proven to be kdr's copies of the target's records: never copied back. */
  originIsTarget: number;
  /** Highest source offset in the batch, mirrored or not. */
  lastOffset: number | null;
}

export interface PlanInput {
  source: TopicPartition;
  records: readonly SourceRecord[];
  /** Last source offset already on the standby, or null when nothing is. */
  lastMirrored: number | null;
  sourceAlias: string;
  targetAlias: string;
  limits: MirrorLimits;
  /**
   * Offsets of records proven to be kdr's copies of the target's records (their kdr.src names the target
   * partition and the other direction's offset map puts that very record there). A header alone proves
   * nothing: applications forward headers.
   */
  copiesFromTarget?: ReadonlySet<number>;
}

export function planMirror(input: PlanInput): MirrorPlan {
  const { source, lastMirrored, sourceAlias, limits } = input;
  const records = [...input.records].sort((a, b) => a.offset - b.offset);
  const plan: MirrorPlan = {
    source,
    transactions: [],
    alreadyMirrored: 0,
    originIsTarget: 0,
    lastOffset: records.at(-1)?.offset ?? null,
  };
  let transaction: PlannedTransaction | undefined;
  let request: OutgoingRecord[] = [];
  let requestBytes = 0;
  let transactionBytes = 0;
  let previousOffset: number | undefined;

  const closeRequest = () => {
    if (request.length > 0) transaction!.requests.push(request);
    request = [];
    requestBytes = 0;
  };

  for (const record of records) {
    if (record.offset === previousOffset) continue; // the same record twice in one delivery
    previousOffset = record.offset;
    if (lastMirrored !== null && record.offset <= lastMirrored) {
      plan.alreadyMirrored++;
      continue;
    }
    if (input.copiesFromTarget?.has(record.offset)) {
      plan.originIsTarget++;
      continue;
    }
    const outgoing = withProvenance(record, source, sourceAlias);
    const size = recordSize(outgoing);
    const full =
      transaction !== undefined &&
      (transaction.records >= limits.maxTransactionRecords ||
        transactionBytes + size > (limits.maxTransactionBytes ?? Number.POSITIVE_INFINITY));
    if (!transaction || full) {
      if (transaction) closeRequest();
      transaction = { requests: [], firstSource: record.offset, lastSource: record.offset, records: 0 };
      plan.transactions.push(transaction);
      transactionBytes = 0;
    }
    if (request.length > 0 && requestBytes + size > limits.maxRequestBytes) closeRequest();
    request.push(outgoing);
    requestBytes += size;
    transactionBytes += size;
    transaction.records++;
    transaction.lastSource = record.offset;
  }
  if (transaction) closeRequest();
  return plan;
}
