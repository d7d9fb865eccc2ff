/**
 * The pair's control state: which cluster is active, what is happening, and an epoch that every
 * transition increments. Transitions are conditional on the epoch they start from, so of two operators
 * (or ten Lambda invocations) starting the same failover, exactly one wins.
 *
 *   MIRRORING ──failover──▶ FAILING_OVER ──▶ FAILED_OVER ──failback──▶ FAILING_BACK ──▶ MIRRORING
 *        ▲                        │                                          │
 *        └──────── abort ─────────┘                         abort ──▶ FAILED_OVER
 */

import type { Operation } from './operation.ts';

export const PAIR_STATES = ['MIRRORING', 'FAILING_OVER', 'FAILED_OVER', 'FAILING_BACK'] as const;
export type PairState = (typeof PAIR_STATES)[number];

export interface ControlState {
  pair: string;
  state: PairState;
  /** Alias of the cluster applications should use. */
  activeCluster: string;
  epoch: number;
  updatedAt: number;
  /** The failover or failback in progress (or last finished): its phase, owner and lease. */
  operation?: Operation;
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
    ? ` (${op.kind}${op.mode ? ` ${op.mode}` : ''} ${op.id} started at ${new Date(op.startedAt).toISOString()}, phase ${op.phase}, owner ${op.owner})`
    : '';
  if (current.state === 'FAILING_OVER' || current.state === 'FAILING_BACK') {
    return `pair ${current.pair} is already ${current.state === 'FAILING_OVER' ? 'failing over' : 'failing back'} (epoch ${current.epoch})${since}`;
  }
  return `pair ${current.pair} is ${current.state} with ${current.activeCluster} active (epoch ${current.epoch}); cannot move to ${wanted}${since}`;
}

/**
 * The forward mirror (primary → standby) may write while mirroring and while a planned failover drains
 * it; from the failover's fence phase on it may not, so positions are read from a standby nobody writes.
 */
export function forwardMirrorAllowed(control: Pick<ControlState, 'state' | 'operation'>): boolean {
  if (control.state === 'MIRRORING') return true;
  return control.state === 'FAILING_OVER' && control.operation?.phase === 'drain';
}

/**
 * The reverse mirror (standby → primary) writes only for a failback: while it drains, and once more
 * right after the primary became active again, to copy back what the standby got until then.
 */
export function reverseMirrorAllowed(control: Pick<ControlState, 'state' | 'operation'>): boolean {
  const op = control.operation;
  if (op?.kind !== 'failback' || op.outcome) return false;
  if (control.state === 'FAILING_BACK')
    return ['export', 'drain', 'groups', 'redrain', 'flip'].includes(op.phase);
  return control.state === 'MIRRORING' && op.phase === 'late-writes';
}
