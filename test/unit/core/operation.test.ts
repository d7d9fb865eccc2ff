import { describe, expect, it } from 'vitest';
import {
  abortDecision,
  flipped,
  leaseDecision,
  nextPhase,
  type Operation,
  phaseReached,
} from '../../../src/core/operation.ts';

const op = (over: Partial<Operation>): Operation => ({
  id: 'fo-1',
  kind: 'failover',
  mode: 'planned',
  phase: 'drain',
  startedAt: 0,
  owner: 'host/1',
  leaseUntil: 1000,
  timeoutMs: 60_000,
  ...over,
});

describe('operation phases', () => {
  it('run in their fixed order for each kind and mode', () => {
    expect(nextPhase(op({}), 'drain')).toBe('fence');
    expect(nextPhase(op({}), 'fence')).toBe('checkpoint');
    expect(nextPhase(op({ mode: 'unplanned' }), 'fence')).toBe('translate');
    expect(nextPhase(op({ kind: 'failback' }), 'groups')).toBe('redrain');
    expect(nextPhase(op({ kind: 'failback' }), 'flip')).toBe('late-writes');
    expect(nextPhase(op({}), 'done')).toBe('done');
    expect(() => nextPhase(op({ mode: 'unplanned' }), 'drain')).toThrow(/not a failover phase/);
    expect(phaseReached(op({ phase: 'groups' }), 'fence')).toBe(true);
    expect(phaseReached(op({ phase: 'drain' }), 'fence')).toBe(false);
  });

  it('count as flipped only past the flip (the flip moves the phase in its own write)', () => {
    expect(flipped(op({ phase: 'flip' }))).toBe(false);
    expect(flipped(op({ phase: 'stop-mirror' }))).toBe(true);
    expect(flipped(op({ kind: 'failback', phase: 'late-writes' }))).toBe(true);
  });
});

describe('the lease', () => {
  const alive = (answer: boolean | undefined) => () => answer;
  it('is mine, expired, left by a dead owner, or held', () => {
    expect(leaseDecision(op({}), 'host/1', 5000, alive(true))).toEqual({ kind: 'mine' });
    expect(leaseDecision(op({}), 'host/2', 1000, alive(true))).toEqual({ kind: 'expired', since: 1000 });
    expect(leaseDecision(op({}), 'host/2', 999, alive(false))).toEqual({
      kind: 'owner-dead',
      owner: 'host/1',
    });
    expect(leaseDecision(op({}), 'host/2', 999, alive(undefined))).toEqual({
      kind: 'held',
      owner: 'host/1',
      until: 1000,
    });
  });
});

describe('abort', () => {
  it('is safe before the flip, and says what stays behind', () => {
    const d = abortDecision(op({ phase: 'groups' }));
    expect(d.kind).toBe('safe');
    if (d.kind === 'safe') {
      expect(d.to).toBe('MIRRORING');
      expect(d.notes.join(' ')).toMatch(/positions this failover committed on the standby stay/);
    }
    const b = abortDecision(op({ kind: 'failback', phase: 'drain' }));
    expect(b.kind === 'safe' && b.to).toBe('FAILED_OVER');
  });

  it('is refused once the other cluster is active, or the operation ended', () => {
    const d = abortDecision(op({ phase: 'stop-mirror' }));
    expect(d.kind).toBe('unsafe');
    if (d.kind === 'unsafe') expect(d.why).toMatch(/already made the standby active.*kdr failback/);
    expect(abortDecision(op({ kind: 'failback', phase: 'late-writes' })).kind).toBe('unsafe');
    expect(abortDecision(op({ phase: 'done', outcome: 'done' })).kind).toBe('unsafe');
  });
});
