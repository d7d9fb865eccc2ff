/**
 * Topic generations: a topic is its id, not its name. Kafka gives every topic an id (KIP-516); a topic
 * deleted and created again under the same name gets a new one and starts again at offset 0. The offset
 * map keeps one *generation* per (source topic id, standby topic id) pair of a partition, so that a new
 * topic's offsets are never taken for, or translated through, an old topic's. Decided here without I/O.
 */

/** A range of offsets that was deleted (retention, DeleteRecords) before kdr read it. */
export interface OffsetGap {
  /** First offset of the range. */
  from: number;
  /** First offset after the range (exclusive). */
  to: number;
  /** Offsets in the range: an upper bound of the records lost (transaction markers take offsets too). */
  count: number;
  /** When kdr saw that the range was gone (ms since epoch). */
  seenAt: number;
  /** Which log the range was deleted from. */
  side: 'source' | 'standby';
}

export interface GenerationSummary {
  generation: number;
  sourceTopicId: string | null;
  standbyTopicId: string | null;
  lastSource: number | null;
  lastStandby: number | null;
  /** When the next generation replaced this one, and why. */
  endedAt: number;
  reason: string;
}

/** What the offset map knows of one partition besides its entries. */
export interface PartitionHead {
  /** 1 for the first topic seen under this name; +1 each time either side's topic id changes. */
  generation: number;
  sourceTopicId: string | null;
  standbyTopicId: string | null;
  /** No record of this generation is on the standby below this offset (where the generation began). */
  standbyFloor: number;
  /** When this generation began (ms since epoch). */
  since: number;
  /** Ranges of this generation deleted before kdr read them, oldest first (the last MAX_GAPS). */
  gaps: OffsetGap[];
  /** Earlier generations, newest first (the last MAX_PREVIOUS). */
  previous: GenerationSummary[];
}

export const MAX_GAPS = 20;
export const MAX_PREVIOUS = 5;

export interface LiveTopicIds {
  source: string | null;
  standby: string | null;
}

export type GenerationDecision =
  | { kind: 'same'; head: PartitionHead; write: boolean }
  | { kind: 'new'; head: PartitionHead; reason: string };

const changed = (known: string | null, live: string | null) =>
  known !== null && live !== null && known !== live;

/**
 * Which generation a partition's writer continues, right after it fenced every other writer. A changed
 * source id means the source topic was re-created: its records are mirrored after what the standby has
 * (the standby topic is never deleted). A changed standby id means the standby topic was re-created under
 * kdr: what the map says it holds is gone, so the new generation starts on the new topic's log.
 */
export function decideGeneration(input: {
  head: PartitionHead | undefined;
  live: LiveTopicIds;
  latest: { lastSource: number; lastStandby: number } | undefined;
  standby: { logStart: number; lastStable: number };
  /** The source partition's end (high watermark): read when ids cannot tell (no head, or no ids). */
  sourceEnd?: number;
  now: number;
}): GenerationDecision {
  const { head, live, latest, standby, now } = input;
  // Without ids to compare, a source log that ends before what the map says was mirrored was re-created
  // (a log never shrinks): a map written before kdr kept topic ids, or a cluster that has none.
  const idsUnknown = !head?.sourceTopicId || live.source === null;
  if (idsUnknown && latest && input.sourceEnd !== undefined && latest.lastSource >= input.sourceEnd) {
    const base: PartitionHead = head ?? {
      generation: 1,
      sourceTopicId: null,
      standbyTopicId: null,
      standbyFloor: 0,
      since: now,
      gaps: [],
      previous: [],
    };
    return newGeneration(
      base,
      live,
      latest,
      standby,
      now,
      `the source log ends at ${input.sourceEnd}, before offset ${latest.lastSource} the map says was mirrored: the topic was re-created`,
      false,
    );
  }
  if (!head) {
    return {
      kind: 'same',
      write: true,
      head: {
        generation: 1,
        sourceTopicId: live.source,
        standbyTopicId: live.standby,
        standbyFloor: 0,
        since: now,
        gaps: [],
        previous: [],
      },
    };
  }
  const sourceChanged = changed(head.sourceTopicId, live.source);
  const standbyChanged = changed(head.standbyTopicId, live.standby);
  if (sourceChanged || standbyChanged) {
    const reason = sourceChanged
      ? `the source topic was re-created (topic id ${head.sourceTopicId} -> ${live.source})`
      : `the standby topic was re-created (topic id ${head.standbyTopicId} -> ${live.standby})`;
    return newGeneration(head, live, latest, standby, now, reason, !sourceChanged);
  }
  const learned =
    (head.sourceTopicId === null && live.source !== null) ||
    (head.standbyTopicId === null && live.standby !== null);
  if (!learned) return { kind: 'same', head, write: false };
  return {
    kind: 'same',
    write: true,
    head: {
      ...head,
      sourceTopicId: head.sourceTopicId ?? live.source,
      standbyTopicId: head.standbyTopicId ?? live.standby,
    },
  };
}

function newGeneration(
  head: PartitionHead,
  live: LiveTopicIds,
  latest: { lastSource: number; lastStandby: number } | undefined,
  standby: { logStart: number; lastStable: number },
  now: number,
  reason: string,
  standbyChanged: boolean,
): GenerationDecision {
  const summary: GenerationSummary = {
    generation: head.generation,
    sourceTopicId: head.sourceTopicId,
    standbyTopicId: head.standbyTopicId,
    lastSource: latest?.lastSource ?? null,
    lastStandby: latest?.lastStandby ?? null,
    endedAt: now,
    reason,
  };
  return {
    kind: 'new',
    reason,
    head: {
      generation: head.generation + 1,
      sourceTopicId: live.source,
      standbyTopicId: live.standby,
      // Everything the standby holds now belongs to earlier generations (or, on a new standby topic,
      // nothing does): this generation's records all land after it.
      standbyFloor: standbyChanged ? standby.logStart : standby.lastStable,
      since: now,
      gaps: [],
      previous: [summary, ...head.previous].slice(0, MAX_PREVIOUS),
    },
  };
}

/** Whether live ids say the topic is no longer the one a head describes (a re-check without a fence). */
export function generationStale(head: PartitionHead, live: LiveTopicIds): boolean {
  return changed(head.sourceTopicId, live.source) || changed(head.standbyTopicId, live.standby);
}

/** The head with one more gap; a gap touching the last one extends it. */
export function withGap(head: PartitionHead, gap: OffsetGap): PartitionHead {
  const last = head.gaps.at(-1);
  if (last && last.side === gap.side && gap.from <= last.to && gap.to >= last.from) {
    const from = Math.min(last.from, gap.from);
    const to = Math.max(last.to, gap.to);
    return { ...head, gaps: [...head.gaps.slice(0, -1), { ...last, from, to, count: to - from }] };
  }
  return { ...head, gaps: [...head.gaps, gap].slice(-MAX_GAPS) };
}
