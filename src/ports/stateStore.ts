import type { ControlState, PairState, TransitionRecord } from '../core/control.ts';
import type { Operation } from '../core/operation.ts';

export interface GroupCheckpoint {
  group: string;
  topic: string;
  partition: number;
  /** Committed offset on the primary. */
  sourceOffset: number;
  /** Its translation on the standby at checkpoint time (null: nothing at or after it was mirrored yet). */
  standbyOffset: number | null;
  /** The source topic's id when it was checkpointed: a re-created topic's offsets are not the old one's. */
  sourceTopicId?: string | null;
  checkpointedAt: number;
}

/** What the primary looked like at a checkpoint: the basis of an unplanned failover's RPO. */
export interface PartitionObservation {
  topic: string;
  partition: number;
  /** The source topic's id when observed (a re-created topic is another topic). */
  sourceTopicId?: string | null;
  /** Last stable offset of the primary partition. */
  endOffset: number;
  lastMirrored: number | null;
  /** Source timestamp of the first record not mirrored at that time, when there was one. */
  firstUnmirroredTimestamp: number | null;
  observedAt: number;
  /**
   * Offsets after the last mirrored one that were already deleted (retention, DeleteRecords) when kdr came
   * to read them: never mirrored, and no longer readable anywhere.
   */
  gap?: {
    topic: string;
    partition: number;
    /** First offset deleted before kdr read it. */
    from: number;
    /** Exclusive: the partition's log start when kdr saw the gap. */
    to: number;
    /** to - from. Offsets: an upper bound of the records lost (markers and aborted records take offsets too). */
    count: number;
    /** Proven by an earlier look at the range: it held no committed record (only markers, aborted records). */
    markersOnly?: boolean;
    seenAt: number;
  };
  /**
   * [lastMirrored + 1, markersOnlyTo) held nothing to mirror when observed: transaction markers, aborted
   * records or kdr's proven copies of the standby's records. A later gap inside it loses nothing. Absent
   * when that is not known.
   */
  markersOnlyTo?: number;
}

export interface CheckpointSet {
  groups: GroupCheckpoint[];
  observations: PartitionObservation[];
  /** When the newest complete checkpoint finished, or null. */
  at: number | null;
}

/** The pair's durable state besides the offset map (DynamoDB). */
export interface StateStore {
  getControl(): Promise<ControlState>;
  /**
   * Moves the pair from `expectedEpoch` to the next state with epoch + 1, atomically with its history
   * entry. Throws a StateError naming the current state and epoch when the pair moved meanwhile.
   */
  transition(
    expectedEpoch: number,
    next: {
      state: PairState;
      activeCluster: string;
      operation?: Operation;
      owner: string;
      reason: string;
    },
    /** Also require that operation, owned by that owner, on the control item (an operation's own flip). */
    expectedOperation?: { id: string; owner: string },
  ): Promise<ControlState>;
  /**
   * Changes the operation on the control item without a transition (its phase, its lease), only while
   * the pair is still at `expected.epoch` with that operation owned by `expected.owner` (and, for a
   * takeover, that lease). Throws a StateError LEASE_LOST otherwise.
   */
  updateOperation(
    expected: { epoch: number; id: string; owner: string; leaseUntil?: number },
    next: Operation,
  ): Promise<ControlState>;
  /** What an operation's phases computed and the later ones use (group moves, the RPO, the report). */
  putOperationData(id: string, key: string, value: unknown): Promise<void>;
  getOperationData<T>(id: string, key: string): Promise<T | undefined>;
  history(limit?: number): Promise<TransitionRecord[]>;
  putCheckpoints(set: {
    groups: GroupCheckpoint[];
    observations: PartitionObservation[];
    at: number;
  }): Promise<void>;
  getCheckpoints(): Promise<CheckpointSet>;
}
