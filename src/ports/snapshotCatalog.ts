/** The DynamoDB side of snapshots: one item per snapshot (for listing), and a lease per cluster. */
export interface SnapshotIndexEntry {
  snapshotId: string;
  cluster: string;
  parent: string | null;
  cutAt: string;
  completedAt: string;
  manifestKey: string;
  records: number;
  bytes: number;
  segments: number;
  gaps: number;
}

export interface SnapshotCatalog {
  /** Takes the cluster's snapshot lease, or throws naming who holds it and until when. */
  acquireLease(cluster: string, owner: string, ttlMs: number): Promise<void>;
  releaseLease(cluster: string, owner: string): Promise<void>;
  index(entry: SnapshotIndexEntry): Promise<void>;
  list(cluster?: string): Promise<SnapshotIndexEntry[]>;
  remove(cluster: string, snapshotId: string): Promise<void>;
}
