/**
 * Failover and failback as resumable operations: a fixed sequence of named phases whose progress lives
 * in the pair's control item, owned through a lease that the running process renews. A process that dies
 * (Ctrl-C, SIGKILL, a Lambda timeout or OOM) leaves the phase it was in; the same command run again takes
 * the lease once it expired (or at once when the owner is a dead process on this host) and carries on
 * from that phase. Every phase is idempotent: re-running one that was cut short does it again or
 * finds it done.
 *
 * Pure: no I/O. The services run the phases; the state store persists them.
 */

export type OperationKind = 'failover' | 'failback';
export type FailoverMode = 'planned' | 'unplanned';

export const FAILOVER_PHASES = {
  planned: ['drain', 'fence', 'checkpoint', 'groups', 'flip', 'stop-mirror', 'done'],
  unplanned: ['fence', 'translate', 'groups', 'flip', 'stop-mirror', 'done'],
} as const;

export const FAILBACK_PHASES = [
  'export',
  'drain',
  'groups',
  'redrain',
  'flip',
  'late-writes',
  'start-mirror',
  'done',
] as const;

export type FailoverPhase = (typeof FAILOVER_PHASES)[FailoverMode][number];
export type FailbackPhase = (typeof FAILBACK_PHASES)[number];
export type OperationPhase = FailoverPhase | FailbackPhase;

/** The operation in progress (or last finished), kept on the control item. */
export interface Operation {
  id: string;
  kind: OperationKind;
  mode?: FailoverMode;
  phase: OperationPhase;
  startedAt: number;
  /** Who holds the lease: `<host>/<pid>` for a process, `lambda/<request id>` for an invocation. */
  owner: string;
  /** Until when the owner holds it (its clock, ms); 0 once released at a phase boundary. */
  leaseUntil: number;
  /** The operation's own budget for waiting on lag (the drain), from its start, across invocations. */
  timeoutMs: number;
  /** The option to place groups before the outage records (failback). */
  readOutage?: boolean;
  finishedAt?: number;
  outcome?: 'done' | 'aborted';
}

export function phasesOf(op: Pick<Operation, 'kind' | 'mode'>): readonly OperationPhase[] {
  return op.kind === 'failover' ? FAILOVER_PHASES[op.mode ?? 'planned'] : FAILBACK_PHASES;
}

/** The phase after `phase` in the operation's sequence ('done' stays 'done'). */
export function nextPhase(op: Pick<Operation, 'kind' | 'mode'>, phase: OperationPhase): OperationPhase {
  const phases = phasesOf(op);
  const i = phases.indexOf(phase);
  if (i < 0) throw new Error(`phase ${phase} is not a ${op.kind} phase (${phases.join(', ')})`);
  return phases[Math.min(i + 1, phases.length - 1)]!;
}

/** Whether `phase` comes at or after `than` in the operation's sequence. */
export function phaseReached(op: Pick<Operation, 'kind' | 'mode' | 'phase'>, than: OperationPhase): boolean {
  const phases = phasesOf(op);
  return phases.indexOf(op.phase) >= phases.indexOf(than);
}

/**
 * Whether the active cluster has changed. The flip's transition moves the phase past 'flip' in the same
 * write, so a persisted 'flip' means it has not happened yet.
 */
export function flipped(op: Pick<Operation, 'kind' | 'mode' | 'phase'>): boolean {
  const phases = phasesOf(op);
  return phases.indexOf(op.phase) > phases.indexOf('flip');
}

export function operationId(kind: OperationKind, epoch: number, now: number, random: string): string {
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${kind === 'failover' ? 'fo' : 'fb'}-${stamp}-e${epoch}-${random}`;
}

export type LeaseDecision =
  | { kind: 'mine' }
  | { kind: 'expired'; since: number }
  | { kind: 'owner-dead'; owner: string }
  | { kind: 'held'; owner: string; until: number };

/**
 * Whether `me` may run the operation now. `alive(owner)` tells whether an owner on this host still runs
 * (undefined: cannot tell, e.g. another host or a Lambda invocation).
 */
export function leaseDecision(
  op: Pick<Operation, 'owner' | 'leaseUntil'>,
  me: string,
  now: number,
  alive: (owner: string) => boolean | undefined,
): LeaseDecision {
  if (op.owner === me) return { kind: 'mine' };
  if (op.leaseUntil <= now) return { kind: 'expired', since: op.leaseUntil };
  if (alive(op.owner) === false) return { kind: 'owner-dead', owner: op.owner };
  return { kind: 'held', owner: op.owner, until: op.leaseUntil };
}

export type AbortDecision =
  | { kind: 'safe'; to: 'MIRRORING' | 'FAILED_OVER'; notes: string[] }
  | { kind: 'unsafe'; why: string };

/**
 * Whether an abort can return the pair to its last stable state. Before the flip nothing applications
 * rely on has changed (positions moved on the inactive cluster are not read by anyone and are moved again
 * by the next run); after it applications may already use the new active cluster.
 */
export function abortDecision(op: Operation): AbortDecision {
  if (op.outcome) return { kind: 'unsafe', why: `operation ${op.id} already ended (${op.outcome})` };
  if (flipped(op)) {
    return {
      kind: 'unsafe',
      why:
        op.kind === 'failover'
          ? `operation ${op.id} already made the standby active (phase ${op.phase}); applications may be using it. Run \`kdr failover\` again to finish it, or \`kdr failback\` to return`
          : `operation ${op.id} already made the primary active again (phase ${op.phase}); applications may be using it. Run \`kdr failback\` again to finish it, or \`kdr failover\` to return`,
    };
  }
  const notes: string[] = [];
  const groupsMoved = phaseReached(op, 'groups');
  if (op.kind === 'failover') {
    if (groupsMoved)
      notes.push(
        'consumer-group positions this failover committed on the standby stay there; nothing reads them while mirroring, and the next failover moves them again',
      );
    if (phaseReached(op, 'fence'))
      notes.push('the mirror was fenced; it takes its partitions back on its next batch');
    return { kind: 'safe', to: 'MIRRORING', notes };
  }
  if (phaseReached(op, 'drain'))
    notes.push(
      'records already mirrored back to the primary stay there, marked as copies (the forward mirror skips them; the next failback continues after them)',
    );
  if (groupsMoved)
    notes.push(
      'consumer-group positions committed on the primary stay there; the next failback moves them again',
    );
  notes.push('records exported to the bucket stay there');
  return { kind: 'safe', to: 'FAILED_OVER', notes };
}
