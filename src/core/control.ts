/**
 * The pair's control state: which cluster is active, what is happening, and an epoch that every
 * transition increments. Transitions are conditional on the epoch they start from, so of two operators
 * (or ten Lambda invocations) starting the same failover, exactly one wins.
 *
 *   MIRRORING ──failover──▶ FAILING_OVER ──▶ FAILED_OVER ──failback──▶ FAILING_BACK ──▶ MIRRORING
 *        ▲                        │                                          │
 *        └──────── abort ─────────┘                         abort ──▶ FAILED_OVER
 */

export const PAIR_STATES = ['MIRRORING', 'FAILING_OVER', 'FAILED_OVER', 'FAILING_BACK'] as const;
export type PairState = (typeof PAIR_STATES)[number];

export interface ControlState {
  pair: string;
  state: PairState;
  /** Alias of the cluster applications should use. */
  activeCluster: string;
  epoch: number;
  updatedAt: number;
  /** The failover or failback in progress (or last finished), for messages. */
  operation?: {
    kind: 'failover' | 'failback';
    mode?: 'planned' | 'unplanned';
    startedAt: number;
    owner: string;
  };
  reason?: string;
}

export interface TransitionRecord {
  epoch: number;
  from: PairState;
  to: PairState;
  activeCluster: string;
  at: number;
  owner: string;
  reason: string;
}

export function initialControl(pair: string, primaryAlias: string): ControlState {
  return { pair, state: 'MIRRORING', activeCluster: primaryAlias, epoch: 0, updatedAt: 0 };
}

const ALLOWED: Record<PairState, PairState[]> = {
  MIRRORING: ['FAILING_OVER'],
  FAILING_OVER: ['FAILED_OVER', 'MIRRORING'],
  FAILED_OVER: ['FAILING_BACK'],
  FAILING_BACK: ['MIRRORING', 'FAILED_OVER'],
};

export function canTransition(from: PairState, to: PairState): boolean {
  return ALLOWED[from].includes(to);
}

/** Why a transition cannot start from the current state, in the words an operator needs. */
export function describeConflict(current: ControlState, wanted: PairState): string {
  const op = current.operation;
  const since = op
    ? ` (${op.kind}${op.mode ? ` ${op.mode}` : ''} started by ${op.owner} at ${new Date(op.startedAt).toISOString()})`
    : '';
  if (current.state === 'FAILING_OVER' || current.state === 'FAILING_BACK') {
    return `pair ${current.pair} is already ${current.state === 'FAILING_OVER' ? 'failing over' : 'failing back'} (epoch ${current.epoch})${since}`;
  }
  return `pair ${current.pair} is ${current.state} with ${current.activeCluster} active (epoch ${current.epoch}); cannot move to ${wanted}${since}`;
}

/** The forward mirror (primary → standby) may write while mirroring and while a failover drains it. */
export function forwardMirrorAllowed(state: PairState): boolean {
  return state === 'MIRRORING' || state === 'FAILING_OVER';
}
