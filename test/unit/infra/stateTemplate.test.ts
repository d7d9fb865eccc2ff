import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../../infra/local/paths.ts';
import { readStateResources } from '../../../infra/local/provision.ts';

/** The durable state's CloudFormation (infra/aws/state.yml), which the lab also provisions on moto. */

const resources = readStateResources(path.join(REPO_ROOT, 'infra/aws/state.yml'));

interface LifecycleRule {
  Id: string;
  Status: string;
  Prefix?: string;
  ExpirationInDays?: number;
  ExpirationDate?: string;
  AbortIncompleteMultipartUpload?: { DaysAfterInitiation: number };
  NoncurrentVersionExpiration?: { NoncurrentDays: number };
}

describe('snapshot bucket lifecycle', () => {
  const bucket = resources.SnapshotBucket!.Properties;
  const rules = (bucket.LifecycleConfiguration as { Rules: LifecycleRule[] }).Rules;

  it('never expires a current object, so no referenced segment or manifest is deleted by S3', () => {
    // Segments are deleted only by `kdr snapshots prune`, which keeps whatever a manifest references.
    for (const rule of rules) {
      expect(rule.ExpirationInDays, rule.Id).toBeUndefined();
      expect(rule.ExpirationDate, rule.Id).toBeUndefined();
    }
  });

  it('keeps versions, and cleans up what prune and killed uploads leave behind', () => {
    expect(bucket.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(rules.some((r) => r.Status === 'Enabled' && r.AbortIncompleteMultipartUpload)).toBe(true);
    expect(rules.some((r) => r.Status === 'Enabled' && r.NoncurrentVersionExpiration)).toBe(true);
  });
});
