import { describe, expect, it } from 'vitest';
import {
  canTransition,
  describeConflict,
  forwardMirrorAllowed,
  initialControl,
  reverseMirrorAllowed,
} from '../../../src/core/control.ts';

describe('control state', () => {
  it('allows only the failover and failback paths', () => {
    expect(canTransition('MIRRORING', 'FAILING_OVER')).toBe(true);
    expect(canTransition('FAILING_OVER', 'FAILED_OVER')).toBe(true);
    expect(canTransition('FAILING_OVER', 'MIRRORING')).toBe(true); // abort
    expect(canTransition('FAILED_OVER', 'FAILING_BACK')).toBe(true);
    expect(canTransition('FAILING_BACK', 'MIRRORING')).toBe(true);
    expect(canTransition('FAILING_BACK', 'FAILED_OVER')).toBe(true); // abort
    expect(canTransition('MIRRORING', 'FAILED_OVER')).toBe(false);
    expect(canTransition('FAILED_OVER', 'MIRRORING')).toBe(false);
  });

  const op = (kind: 'failover' | 'failback', phase: string, outcome?: 'done') => ({
    id: `${kind === 'failover' ? 'fo' : 'fb'}-x`,
    kind,
    mode: 'planned' as const,
    phase: phase as never,
    startedAt: 0,
    owner: 'host/1',
    leaseUntil: 0,
    timeoutMs: 60_000,
    ...(outcome ? { outcome } : {}),
  });

  it('lets the forward mirror write while mirroring and while a failover drains it, not once it fences', () => {
    expect(forwardMirrorAllowed({ state: 'MIRRORING' })).toBe(true);
    expect(forwardMirrorAllowed({ state: 'FAILING_OVER', operation: op('failover', 'drain') })).toBe(true);
    for (const phase of ['fence', 'checkpoint', 'groups', 'flip'])
      expect(forwardMirrorAllowed({ state: 'FAILING_OVER', operation: op('failover', phase) })).toBe(false);
    expect(forwardMirrorAllowed({ state: 'FAILED_OVER' })).toBe(false);
    expect(forwardMirrorAllowed({ state: 'FAILING_BACK' })).toBe(false);
  });

  it('lets the reverse mirror write only for a failback, and once more right after its flip', () => {
    for (const phase of ['export', 'drain', 'groups', 'redrain', 'flip'])
      expect(reverseMirrorAllowed({ state: 'FAILING_BACK', operation: op('failback', phase) })).toBe(true);
    expect(reverseMirrorAllowed({ state: 'MIRRORING', operation: op('failback', 'late-writes') })).toBe(true);
    expect(reverseMirrorAllowed({ state: 'MIRRORING', operation: op('failback', 'start-mirror') })).toBe(
      false,
    );
    expect(reverseMirrorAllowed({ state: 'MIRRORING', operation: op('failback', 'done', 'done') })).toBe(
      false,
    );
    expect(reverseMirrorAllowed({ state: 'FAILED_OVER', operation: op('failover', 'done', 'done') })).toBe(
      false,
    );
    expect(reverseMirrorAllowed({ state: 'MIRRORING' })).toBe(false);
  });

  it('names the epoch and who is failing over', () => {
    const failing = {
      ...initialControl('p', 'primary'),
      state: 'FAILING_OVER' as const,
      epoch: 7,
      operation: { ...op('failover', 'drain'), id: 'fo-1' },
    };
    expect(describeConflict(failing, 'FAILING_OVER')).toBe(
      'pair p is already failing over (epoch 7) (failover planned fo-1 started at 1970-01-01T00:00:00.000Z, phase drain, owner host/1)',
    );
    expect(
      describeConflict(
        { ...failing, state: 'FAILED_OVER', activeCluster: 'standby', epoch: 8 },
        'FAILING_OVER',
      ),
    ).toContain('pair p is FAILED_OVER with standby active (epoch 8); cannot move to FAILING_OVER');
  });
});
