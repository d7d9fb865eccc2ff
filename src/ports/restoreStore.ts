/**
 * Where a restore keeps its progress (DynamoDB), so that a killed or timed-out restore continues where it
 * stopped. Each process that works on a restore claims it (generation + 1); a save from an older
 * generation fails, so a zombie process can never move the progress back.
 */
export interface RestoreStore<P extends { restoreId: string; generation: number }> {
  get(restoreId: string): Promise<P | undefined>;
  /** Writes a new restore's progress; throws STATE_CONFLICT when it exists already. */
  create(progress: P): Promise<void>;
  /** Takes the restore over: returns its progress with the generation bumped. */
  claim(restoreId: string): Promise<P>;
  /** Saves progress; throws STATE_CONFLICT when another process claimed the restore since. */
  save(progress: P): Promise<void>;
}
