/**
 * The offset map: exact runs, not samples. A run says source offsets [sourceStart, sourceStart + count)
 * were mirrored to standby offsets [standbyStart, standbyStart + count); any gap on either side (compaction,
 * transaction markers, aborted records, records not mirrored) starts a new run.
 *
 * One entry per partition per mirrored transaction holds that transaction's runs. Entries are keyed by the
 * *last* source offset they cover, and consecutive entries cover consecutive ranges of the source log,
 * so "the first entry whose key is >= o" holds the first mirrored record at or after o: one Query with
 * Limit 1 translates any offset.
 */

export interface OffsetRun {
  sourceStart: number;
  standbyStart: number;
  count: number;
}

export interface OffsetMapEntry {
  topic: string;
  partition: number;
  /** Last source offset covered (the sort key). */
  lastSource: number;
  /** Standby offset of the record at lastSource. */
  lastStandby: number;
  runs: OffsetRun[];
  /** Source timestamp of the last record (the lag age is measured from it). */
  lastTimestamp: number;
  /** When the entry was written (ms since epoch). */
  mirroredAt: number;
}

/** Runs from (source, standby) offset pairs in ascending order. */
export function buildRuns(pairs: Iterable<readonly [source: number, standby: number]>): OffsetRun[] {
  const runs: OffsetRun[] = [];
  let current: OffsetRun | undefined;
  let previous: readonly [number, number] | undefined;
  for (const pair of pairs) {
    const [source, standby] = pair;
    if (previous && (source <= previous[0] || standby <= previous[1])) {
      throw new RangeError(
        `offset pairs must ascend on both sides: (${previous[0]}, ${previous[1]}) then (${source}, ${standby})`,
      );
    }
    if (
      current &&
      source === current.sourceStart + current.count &&
      standby === current.standbyStart + current.count
    ) {
      current.count++;
    } else {
      current = { sourceStart: source, standbyStart: standby, count: 1 };
      runs.push(current);
    }
    previous = pair;
  }
  return runs;
}

export function* expandRuns(runs: readonly OffsetRun[]): Generator<[source: number, standby: number]> {
  for (const run of runs)
    for (let i = 0; i < run.count; i++) yield [run.sourceStart + i, run.standbyStart + i];
}

export function entryFromRuns(
  tp: { topic: string; partition: number },
  runs: OffsetRun[],
  lastTimestamp: number,
  mirroredAt: number,
): OffsetMapEntry {
  const last = runs.at(-1);
  if (!last) throw new RangeError('an offset map entry needs at least one run');
  return {
    topic: tp.topic,
    partition: tp.partition,
    lastSource: last.sourceStart + last.count - 1,
    lastStandby: last.standbyStart + last.count - 1,
    runs,
    lastTimestamp,
    mirroredAt,
  };
}

export type Translation =
  | { kind: 'exact'; standbyOffset: number; mirroredSource: number }
  | { kind: 'beyond-mirrored'; lastMirroredSource: number | null };

/**
 * Committed-offset semantics: a committed offset o means "o is the next record to read", so it maps to
 * the standby offset of the first mirrored record with source offset >= o. `entry` is the first entry
 * whose lastSource >= o (or undefined when nothing at or after o is mirrored yet).
 */
export function translateCommitted(
  entry: OffsetMapEntry | undefined,
  sourceOffset: number,
  lastMirrored: number | null,
): Translation {
  if (!entry) return { kind: 'beyond-mirrored', lastMirroredSource: lastMirrored };
  for (const run of entry.runs) {
    const runEnd = run.sourceStart + run.count - 1;
    if (runEnd < sourceOffset) continue;
    if (sourceOffset <= run.sourceStart)
      return { kind: 'exact', standbyOffset: run.standbyStart, mirroredSource: run.sourceStart };
    const delta = sourceOffset - run.sourceStart;
    return { kind: 'exact', standbyOffset: run.standbyStart + delta, mirroredSource: sourceOffset };
  }
  throw new RangeError(
    `offset map entry ending at ${entry.lastSource} does not cover source offset ${sourceOffset}`,
  );
}

/**
 * Compact, stable storage form of runs (a DynamoDB item holds at most 400 KB): the first run absolute as
 * "sourceStart:standbyStart:count", each next one relative to the end of the previous one, joined by ','.
 * A transaction's worth of runs on a heavily compacted topic stays a few bytes per run.
 */
export function encodeRuns(runs: readonly OffsetRun[]): string {
  const parts: string[] = [];
  let sourceEnd = 0;
  let standbyEnd = 0;
  for (const [i, r] of runs.entries()) {
    parts.push(
      i === 0
        ? `${r.sourceStart}:${r.standbyStart}:${r.count}`
        : `${r.sourceStart - sourceEnd}:${r.standbyStart - standbyEnd}:${r.count}`,
    );
    sourceEnd = r.sourceStart + r.count;
    standbyEnd = r.standbyStart + r.count;
  }
  return parts.join(',');
}

export function decodeRuns(text: string): OffsetRun[] {
  if (text === '') return [];
  const runs: OffsetRun[] = [];
  let sourceEnd = 0;
  let standbyEnd = 0;
  for (const [i, part] of text.split(',').entries()) {
    const numbers = part.split(':').map(Number);
    const [a, b, count] = numbers as [number, number, number];
    if (numbers.length !== 3 || !numbers.every(Number.isSafeInteger) || count < 1 || a < 0 || b < 0) {
      throw new RangeError(`bad offset run ${JSON.stringify(part)}`);
    }
    const run =
      i === 0
        ? { sourceStart: a, standbyStart: b, count }
        : { sourceStart: sourceEnd + a, standbyStart: standbyEnd + b, count };
    runs.push(run);
    sourceEnd = run.sourceStart + count;
    standbyEnd = run.standbyStart + count;
  }
  return runs;
}

/** The first mirrored record whose standby offset is >= standbyOffset, in an entry found by standby offset. */
export function firstAtOrAfterStandby(
  entry: OffsetMapEntry | undefined,
  standbyOffset: number,
): { source: number; standby: number } | undefined {
  if (!entry) return undefined;
  for (const run of entry.runs) {
    const runEnd = run.standbyStart + run.count - 1;
    if (runEnd < standbyOffset) continue;
    const delta = Math.max(0, standbyOffset - run.standbyStart);
    return { source: run.sourceStart + delta, standby: run.standbyStart + delta };
  }
  return undefined;
}

/**
 * The standby offset that exactly `sourceOffset` was mirrored to, or undefined when it was not mirrored
 * (a gap): `entries` are consecutive entries covering it, as coveringRange returns them.
 */
export function exactTargetOf(entries: readonly OffsetMapEntry[], sourceOffset: number): number | undefined {
  const entry = entries.find((e) => e.lastSource >= sourceOffset);
  for (const run of entry?.runs ?? []) {
    if (sourceOffset < run.sourceStart) return undefined;
    if (sourceOffset < run.sourceStart + run.count)
      return run.standbyStart + (sourceOffset - run.sourceStart);
  }
  return undefined;
}

/**
 * Forward translation after a failback, when the source log holds kdr's copies of target records (the
 * reverse mirror's work) between the records it mirrored: committed offset `sourceOffset` goes to the
 * target position of whichever comes first in the source log at or after it, the first forward-mirrored
 * record (`forward`: the first forward entry whose lastSource >= sourceOffset) or the first copy
 * (`reverse`: the first entry of the other direction's map whose lastStandby >= sourceOffset; its
 * "standby" offsets are this log's offsets, its "source" offsets the target's originals). A copy's target
 * position is its original. The mirror image of failback's translation back.
 */
export function translateThroughCopies(
  forward: OffsetMapEntry | undefined,
  reverse: OffsetMapEntry | undefined,
  sourceOffset: number,
): { standbyOffset: number; mirroredSource: number; via: 'forward' | 'copy' } | undefined {
  const f = translateCommitted(forward, sourceOffset, null);
  const copy = firstAtOrAfterStandby(reverse, sourceOffset);
  const viaForward =
    f.kind === 'exact'
      ? { standbyOffset: f.standbyOffset, mirroredSource: f.mirroredSource, via: 'forward' as const }
      : undefined;
  const viaCopy = copy
    ? { standbyOffset: copy.source, mirroredSource: copy.standby, via: 'copy' as const }
    : undefined;
  if (viaForward && viaCopy) return viaCopy.mirroredSource < viaForward.mirroredSource ? viaCopy : viaForward;
  return viaForward ?? viaCopy;
}

/**
 * The ranges [from, to) of this log that `reverse` entries (found by their "standby" offsets, which are
 * this log's) say hold kdr's copies of the other cluster's records, clipped to [low, high).
 */
export function copiedRanges(
  reverse: readonly OffsetMapEntry[],
  low: number,
  high: number,
): { from: number; to: number }[] {
  const ranges: { from: number; to: number }[] = [];
  for (const entry of reverse)
    for (const run of entry.runs) {
      const from = Math.max(low, run.standbyStart);
      const to = Math.min(high, run.standbyStart + run.count);
      if (from >= to) continue;
      const last = ranges.at(-1);
      if (last && last.to >= from) last.to = Math.max(last.to, to);
      else ranges.push({ from, to });
    }
  return ranges.sort((a, b) => a.from - b.from);
}
