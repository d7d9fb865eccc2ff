import { describe, expect, it } from 'vitest';
import {
  canTransition,
  describeConflict,
  forwardMirrorAllowed,
  initialControl,
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

  it('lets the forward mirror write while mirroring and while a failover drains it', () => {
    expect(forwardMirrorAllowed('MIRRORING')).toBe(true);
    expect(forwardMirrorAllowed('FAILING_OVER')).toBe(true);
    expect(forwardMirrorAllowed('FAILED_OVER')).toBe(false);
    expect(forwardMirrorAllowed('FAILING_BACK')).toBe(false);
  });

  it('names the epoch and who is failing over', () => {
    const failing = {
      ...initialControl('p', 'primary'),
      state: 'FAILING_OVER' as const,
      epoch: 7,
      operation: { kind: 'failover' as const, mode: 'planned' as const, startedAt: 0, owner: 'host/1' },
    };
    expect(describeConflict(failing, 'FAILING_OVER')).toBe(
      'pair p is already failing over (epoch 7) (failover planned started by host/1 at 1970-01-01T00:00:00.000Z)',
    );
    expect(
      describeConflict(
        { ...failing, state: 'FAILED_OVER', activeCluster: 'standby', epoch: 8 },
        'FAILING_OVER',
      ),
    ).toContain('pair p is FAILED_OVER with standby active (epoch 8); cannot move to FAILING_OVER');
  });
});
