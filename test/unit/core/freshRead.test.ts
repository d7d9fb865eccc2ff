import { describe, expect, it } from 'vitest';
import { freshRead } from '../../../src/core/freshRead.ts';

/** A read whose answers the test releases one by one; `value` is what the store holds when a read begins. */
function controlledRead() {
  const pending: { begunWith: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  let value = 0;
  const read = () =>
    new Promise<number>((resolve, reject) => {
      const begunWith = value;
      pending.push({ begunWith, resolve: () => resolve(begunWith), reject });
    });
  return {
    read,
    pending,
    set: (v: number) => (value = v),
    /** Lets the oldest read answer, then lets the promise callbacks run. */
    async answer(error?: Error) {
      const p = pending.shift()!;
      if (error) p.reject(error);
      else p.resolve();
      for (let i = 0; i < 10; i++) await Promise.resolve();
    },
  };
}

describe('freshRead', () => {
  it('serves callers that arrive during a read with one read that begins after them', async () => {
    const store = controlledRead();
    const get = freshRead(store.read);
    const first = get();
    expect(store.pending).toHaveLength(1);
    // The state changes while the first read is out; later callers must see the change.
    store.set(1);
    const later = [get(), get(), get()];
    expect(store.pending).toHaveLength(1);
    await store.answer();
    expect(await first).toBe(0);
    // One more read for all three, begun after the change.
    expect(store.pending).toHaveLength(1);
    await store.answer();
    expect(await Promise.all(later)).toEqual([1, 1, 1]);
    expect(store.pending).toHaveLength(0);
  });

  it('reads again for a caller after the last read ended', async () => {
    const store = controlledRead();
    const get = freshRead(store.read);
    const a = get();
    await store.answer();
    expect(await a).toBe(0);
    store.set(2);
    const b = get();
    expect(store.pending).toHaveLength(1);
    await store.answer();
    expect(await b).toBe(2);
  });

  it('gives a failed read only to its own callers; the next callers get a new read', async () => {
    const store = controlledRead();
    const get = freshRead(store.read);
    const a = get();
    const b = get();
    await store.answer(new Error('throttled'));
    await expect(a).rejects.toThrow('throttled');
    await store.answer();
    expect(await b).toBe(0);
    const c = get();
    await store.answer();
    expect(await c).toBe(0);
    expect(store.pending).toHaveLength(0);
  });

  it('keeps at most one read out and one waiting, however many callers', async () => {
    const store = controlledRead();
    const get = freshRead(store.read);
    const all: Promise<number>[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 20; i++) all.push(get());
      expect(store.pending).toHaveLength(1);
      await store.answer();
    }
    await store.answer();
    await Promise.all(all);
    expect(store.pending).toHaveLength(0);
  });
});
