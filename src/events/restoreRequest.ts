import { z } from 'zod';
import { pair } from './operations.ts';

/** The restore function's payload (`kdr restore` builds the same object from its flags). */

const snapshotIdField = z
  .string()
  .regex(/^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+$/, 'expected a snapshot id such as 20261124T193000Z-3fa9');

export const restoreRequestSchema = z
  .object({
    snapshotId: snapshotIdField.optional(),
    at: z
      .string()
      .refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), {
        error: (issue) =>
          `expected an ISO time such as 2026-11-25T02:00:00Z, got ${JSON.stringify(issue.input)}`,
      })
      .optional(),
    from: z
      .enum(['primary', 'standby'], {
        error: (issue) => `expected "primary" or "standby", got ${JSON.stringify(issue.input)}`,
      })
      .default('primary'),
    target: z.string().min(1).max(2000).default('primary'),
    topics: z.string().min(1).max(1000).optional(),
    rename: z.array(z.string().max(600)).max(1000).default([]),
    topicPrefix: z.string().max(200).optional(),
    mode: z
      .enum(['new', 'append', 'replace'], {
        error: (issue) => `expected "new", "append" or "replace", got ${JSON.stringify(issue.input)}`,
      })
      .default('new'),
    yes: z.boolean().default(false),
    safetySnapshot: z.boolean().default(true),
    dryRun: z.boolean().default(false),
    /** retention.ms of the restored topics (-1: no limit); refused when records are still past it. */
    retentionMs: z
      .number({
        error: (issue) =>
          `expected retentionMs (--retention-ms) as a whole number of milliseconds (-1: no limit), got ${JSON.stringify(issue.input)}`,
      })
      .int({ error: (issue) => `expected retentionMs as a whole number of milliseconds, got ${issue.input}` })
      .min(-1, { error: (issue) => `expected retentionMs of -1 (no limit) or more, got ${issue.input}` })
      .max(Number.MAX_SAFE_INTEGER)
      .optional(),
    /** Records get the restore's time as timestamp; the original is kept in header kdr.ts. */
    restamp: z.boolean().default(false),
    /** A continuation (the function re-invoking itself) carries how far the checksum check got. */
    verifiedSegments: z.number().int().nonnegative().optional(),
    /** ...and what the check counted so far (records past retention, at the time it started). */
    verification: z
      .object({
        segments: z.number().int().nonnegative(),
        asOf: z.number().int().nonnegative(),
        topics: z.record(
          z.string(),
          z.object({
            retentionMs: z.number().int().nonnegative().nullable(),
            records: z.number().int().nonnegative(),
            oldestTimestamp: z.number().int().nullable(),
          }),
        ),
      })
      .optional(),
    pair: pair.optional(),
  })
  .strict()
  .refine((r) => (r.snapshotId === undefined) !== (r.at === undefined), {
    error: 'expected exactly one of snapshotId (--snapshot) and at (--at)',
  });

export type RestoreRequestInput = z.output<typeof restoreRequestSchema>;

/** The options `restoreServiceRequest` does not carry: what the restore writes (timestamps, retention). */
export function restoreWriteOptions(request: RestoreRequestInput): {
  retentionMs?: number;
  restamp: boolean;
} {
  return {
    ...(request.retentionMs !== undefined ? { retentionMs: request.retentionMs } : {}),
    restamp: request.restamp,
  };
}
