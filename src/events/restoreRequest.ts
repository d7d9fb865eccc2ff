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
    /** A continuation (the function re-invoking itself) carries how far the checksum check got. */
    verifiedSegments: z.number().int().nonnegative().optional(),
    pair: pair.optional(),
  })
  .strict()
  .refine((r) => (r.snapshotId === undefined) !== (r.at === undefined), {
    error: 'expected exactly one of snapshotId (--snapshot) and at (--at)',
  });

export type RestoreRequestInput = z.output<typeof restoreRequestSchema>;
