import { execa } from 'execa';
import type { MirrorSummary } from './mirrorLoop.ts';

/**
 * `kdr mirror --workers N`: N `kdr mirror` processes in the mirror's consumer group, so that the work of
 * many partitions uses more than one core. Each worker is an ordinary member: the group shares the
 * partitions out, and each partition's transactional writer fences any other, so exactly once holds as it
 * does for processes started by hand. The parent only starts, watches and stops them: a signal goes to
 * every worker; a worker that fails stops the others (a supervisor restarts the whole, not half of it).
 */

export interface WorkerResult {
  worker: number;
  pid: number | undefined;
  exitCode: number;
  recordsMirrored: number | null;
}

export interface WorkersSummary extends MirrorSummary {
  workers: WorkerResult[];
  /** The first worker that failed (the others were stopped then), or null. */
  failed: WorkerResult | null;
}

export interface MirrorWorkersOptions {
  workers: number;
  /** The arguments of each worker's `kdr mirror` (without --workers and --json). */
  args: string[];
  stopped: Promise<string>;
  note: (line: string) => void;
}

/** How long a worker has to stop after SIGTERM before it is killed. */
const STOP_GRACE_MS = 30_000;

function startWorker(index: number, args: string[]) {
  // process.argv[1] is bin/kdr.mjs: the workers run the same sources, with the same Node flags.
  return execa(process.execPath, [...process.execArgv, process.argv[1]!, 'mirror', ...args, '--json'], {
    env: { KDR_MIRROR_WORKER: String(index), KDR_MIRROR_WORKERS_PARENT: String(process.pid) },
    stdout: 'pipe',
    stderr: 'inherit',
    reject: false,
    forceKillAfterDelay: STOP_GRACE_MS,
    // cleanup kills the workers when the parent exits; a parent SIGKILLed runs no handler, so each worker
    // also watches this channel and stops when it closes (watchParent).
    cleanup: true,
    ipc: true,
  });
}

/**
 * In a worker: the parent's death (even by SIGKILL) stops this worker, through its own SIGTERM handling.
 * Seen as the channel closing, or, when the parent died while this worker was still loading (before it
 * could listen), as a parent pid that is no longer its parent's.
 */
export function watchParent(): void {
  const parent = Number(process.env.KDR_MIRROR_WORKERS_PARENT);
  if (!process.env.KDR_MIRROR_WORKER || !parent) return;
  // Nobody reads this worker's summary once the parent is gone: a write to its pipe must not crash it.
  process.stdout.on('error', () => {});
  const stop = () => process.kill(process.pid, 'SIGTERM');
  if (process.ppid !== parent || !process.connected) return void setImmediate(stop);
  process.once('disconnect', stop);
}

function summaryOf(stdout: unknown): MirrorSummary | null {
  try {
    const parsed = JSON.parse(String(stdout));
    return typeof parsed?.recordsMirrored === 'number' ? (parsed as MirrorSummary) : null;
  } catch {
    return null;
  }
}

export async function runMirrorWorkers(options: MirrorWorkersOptions): Promise<WorkersSummary> {
  const started = Date.now();
  const children = Array.from({ length: options.workers }, (_, i) => startWorker(i + 1, options.args));
  options.note(
    `kdr: ${options.workers} mirror workers started (pids ${children.map((c) => c.pid).join(', ')})`,
  );
  let stopping = false;
  let firstFailed: WorkerResult | undefined;
  const stopAll = (why: string) => {
    if (stopping) return;
    stopping = true;
    options.note(`kdr: stopping the mirror workers (${why})`);
    for (const child of children) child.kill('SIGTERM');
  };
  void options.stopped.then((signal) => stopAll(signal));
  const finished: { result: Awaited<(typeof children)[number]>; summary: MirrorSummary | null }[] = [];
  const results = await Promise.all(
    children.map(async (child, i) => {
      const result = await child;
      const summary = summaryOf(result.stdout);
      finished.push({ result, summary });
      // Stopped by the signal this parent sent before the worker could handle it (it was still loading): a
      // clean stop, not a failure.
      const stoppedHere = stopping && result.signal === 'SIGTERM';
      const own: WorkerResult = {
        worker: i + 1,
        pid: child.pid,
        exitCode: result.exitCode ?? (stoppedHere ? 0 : 1),
        recordsMirrored: summary?.recordsMirrored ?? null,
      };
      if (own.exitCode !== 0 && !firstFailed) {
        firstFailed = own;
        stopAll(`worker ${own.worker} (pid ${own.pid}) exited with code ${own.exitCode}`);
      }
      return own;
    }),
  );
  // The last worker to finish saw the others' work too: its view of the partitions is the latest.
  const last = finished.at(-1)?.summary;
  return {
    recordsMirrored: results.reduce((n, r) => n + (r.recordsMirrored ?? 0), 0),
    durationMs: Date.now() - started,
    topics: last?.topics ?? [],
    partitions: last?.partitions ?? [],
    workers: results,
    failed: firstFailed ?? null,
  };
}
