/**
 * Shares one read among concurrent callers without ever answering a caller with a read that began
 * before it asked. A caller arriving while a read is out waits for the next one, which starts when the
 * current one ends and serves everyone who arrived meanwhile: at most one read out and one waiting,
 * however many callers. The mirror's guard reads the pair's control state before every transaction; with
 * hundreds of partitions writing at once that was one state-table read per transaction, and a read that
 * began before a failover changed the state must not let a later transaction through.
 */
export function freshRead<T>(read: () => Promise<T>): () => Promise<T> {
  let running: Promise<unknown> | undefined;
  let next: Promise<T> | undefined;
  return () => {
    if (next) return next;
    const start = (): Promise<T> => {
      next = undefined;
      const current = read();
      running = current.then(
        () => undefined,
        () => undefined,
      );
      void running.then(() => {
        if (running && !next) running = undefined;
      });
      return current;
    };
    if (!running) return start();
    // Starts once the read out now ends; callers until then share it.
    const waiting = running.then(start);
    next = waiting;
    return waiting;
  };
}
