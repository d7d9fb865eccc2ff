import { describe, expect, it } from 'vitest';
import { CONTINUATION_MARGIN_MS, invocationBudget } from '../../src/lambda.ts';

describe('an invocation budget', () => {
  it('ends the margin before the invocation does, and says when a requested wait is longer', () => {
    const context = { getRemainingTimeInMillis: () => 600_000 };
    const fits = invocationBudget(context, 60_000, 1_000);
    expect(fits).toEqual({ runDeadline: 1_000 + 600_000 - CONTINUATION_MARGIN_MS, warnings: [] });
    const clamped = invocationBudget(context, 900_000, 1_000);
    expect(clamped.runDeadline).toBe(fits.runDeadline);
    expect(clamped.warnings).toEqual([
      'timeoutSeconds 900 is longer than this invocation can run (585 s left before its own timeout): it works until then, and the operation continues in the next invocation',
    ]);
  });

  it('has no deadline outside Lambda (no context)', () => {
    expect(invocationBudget(undefined, 900_000)).toEqual({ warnings: [] });
  });
});
