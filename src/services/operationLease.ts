import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { ControlState, PairState } from '../core/control.ts';
import { freshRead } from '../core/freshRead.ts';
import {
  abortDecision,
  flipped,
  leaseDecision,
  nextPhase,
  type Operation,
  type OperationKind,
  type OperationPhase,
  operationId,
} from '../core/operation.ts';
import { describeError, isKdrError, KdrError, StateError, TimeoutError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { StateStore } from '../ports/stateStore.ts';

/**
 * Runs an operation's phases under its lease: claims it (new, expired, or left by a dead process on this
 * host), renews it while phases run, moves it phase by phase, and releases it when this run ends. Every
 * write is conditional on the epoch, the operation id and this owner, so an abort or a takeover stops
 * this run at its next step (LEASE_LOST) instead of letting two runs interleave.
 */

export function defaultOwner(): string {
  return `${hostname()}/${process.pid}`;
}

/** Whether an owner `<host>/<pid>` on this host still runs (undefined: cannot tell from here). */
export function ownerAlive(owner: string): boolean | undefined {
  const match = /^(.+)\/(\d+)$/.exec(owner);
  if (!match || match[1] !== hostname()) return undefined;
  try {
    process.kill(Number(match[2]), 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface LeaseOptions {
  stateStore: StateStore;
  owner: string;
  leaseMs: number;
  logger: Logger;
  clock?: () => number;
  alive?: (owner: string) => boolean | undefined;
}

export class OperationLease {
  private timer: NodeJS.Timeout | undefined;
  private writes: Promise<unknown> = Promise.resolve();
  private lost: KdrError | undefined;
  /** Concurrent verifies (a failover moves groups 16 at a time) share a read that began after they asked. */
  private readonly controlNow = freshRead(() => this.options.stateStore.getControl());
  private constructor(
    private readonly options: LeaseOptions,
    private current: ControlState & { operation: Operation },
  ) {}

  get control(): ControlState & { operation: Operation } {
    return this.current;
  }
  get operation(): Operation {
    return this.current.operation;
  }

  /** Begins a new operation with the transition that starts it (MIRRORING → FAILING_OVER, …). */
  static async begin(
    options: LeaseOptions,
    from: ControlState,
    next: { state: PairState; activeCluster: string; reason: string },
    op: Omit<Operation, 'id' | 'owner' | 'leaseUntil' | 'startedAt'>,
  ): Promise<OperationLease> {
    const now = (options.clock ?? Date.now)();
    const operation: Operation = {
      ...op,
      id: operationId(op.kind, from.epoch + 1, now, randomBytes(3).toString('hex')),
      owner: options.owner,
      leaseUntil: now + options.leaseMs,
      startedAt: now,
    };
    const control = await options.stateStore.transition(from.epoch, {
      ...next,
      operation,
      owner: options.owner,
    });
    const lease = new OperationLease(options, { ...control, operation });
    lease.startHeartbeat();
    return lease;
  }

  /** Takes over the operation on `control` when its lease allows; throws OPERATION_IN_PROGRESS if not. */
  static async claim(options: LeaseOptions, control: ControlState): Promise<OperationLease> {
    const op = control.operation;
    if (!op) throw new StateError('STATE_CONFLICT', `pair ${control.pair} has no operation to resume`);
    const clock = options.clock ?? Date.now;
    const decision = leaseDecision(op, options.owner, clock(), options.alive ?? ownerAlive);
    if (decision.kind === 'held') {
      throw new KdrError(
        'OPERATION_IN_PROGRESS',
        `pair ${control.pair} is already ${op.kind === 'failover' ? 'failing over' : 'failing back'} (epoch ${control.epoch}): ${op.kind} ${op.id} is in phase ${op.phase}, run by ${decision.owner} whose lease ends at ${new Date(decision.until).toISOString()}; run the command again after that to resume it, or --abort`,
        { details: { operationId: op.id, phase: op.phase, owner: op.owner, leaseUntil: op.leaseUntil } },
      );
    }
    const claimed: Operation = { ...op, owner: options.owner, leaseUntil: clock() + options.leaseMs };
    const next = await options.stateStore.updateOperation(
      { epoch: control.epoch, id: op.id, owner: op.owner, leaseUntil: op.leaseUntil },
      claimed,
    );
    if (decision.kind !== 'mine')
      options.logger.warn('resuming an operation its owner left', {
        operationId: op.id,
        phase: op.phase,
        previousOwner: op.owner,
        why: decision.kind,
      });
    const lease = new OperationLease(options, { ...next, operation: next.operation ?? claimed });
    lease.startHeartbeat();
    return lease;
  }

  /** Throws if the lease was lost (taken over, aborted): the caller stops before its next step. */
  check(): void {
    if (this.lost) throw this.lost;
  }

  /**
   * Reads the control item and throws LEASE_LOST unless this run still owns the operation: before a side
   * effect another owner could contradict (a group commit), not only the local flag a heartbeat sets.
   */
  async verify(): Promise<void> {
    this.check();
    const now = await this.controlNow();
    const op = now.operation;
    if (now.epoch !== this.current.epoch || op?.id !== this.operation.id || op.owner !== this.options.owner) {
      this.lost = new KdrError(
        'LEASE_LOST',
        `operation ${this.operation.id} is no longer owned by ${this.options.owner}: the pair is ${now.state} (epoch ${now.epoch})${op ? `, operation ${op.id} phase ${op.phase} owned by ${op.owner}` : ''}`,
      );
      throw this.lost;
    }
  }

  /** Marks the current phase done and persists the next one. */
  async advance(to?: OperationPhase): Promise<Operation> {
    const phase = to ?? nextPhase(this.operation, this.operation.phase);
    await this.update({ phase });
    this.options.logger.info('operation phase', { operationId: this.operation.id, phase });
    return this.operation;
  }

  /** A transition of the pair (the flip, an abort) that also moves the operation to `operation`. */
  async transition(
    next: { state: PairState; activeCluster: string; reason: string },
    operation: Partial<Operation>,
  ): Promise<ControlState> {
    return this.serial(async () => {
      this.check();
      const op = { ...this.operation, ...operation, leaseUntil: this.leaseEnd() };
      const control = await this.options.stateStore.transition(
        this.current.epoch,
        { ...next, operation: op, owner: this.options.owner },
        { id: op.id, owner: this.options.owner },
      );
      this.current = { ...control, operation: op };
      return control;
    });
  }

  /** Ends this run: stops renewing and frees the lease so the next run need not wait for it. */
  async release(patch: Partial<Operation> = {}): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.lost) return;
    await this.update({ ...patch, leaseUntil: 0 }).catch((error) =>
      this.options.logger.warn('could not release the operation lease', { error: String(error) }),
    );
  }

  /** Changes the operation (its phase, mode, outcome) under the lease. */
  patch(patch: Partial<Operation>): Promise<void> {
    return this.update(patch);
  }

  private update(patch: Partial<Operation>): Promise<void> {
    return this.serial(async () => {
      this.check();
      const op = { ...this.operation, leaseUntil: this.leaseEnd(), ...patch };
      try {
        const control = await this.options.stateStore.updateOperation(
          { epoch: this.current.epoch, id: op.id, owner: this.options.owner },
          op,
        );
        this.current = { ...control, operation: control.operation ?? op };
      } catch (error) {
        if (error instanceof KdrError && error.code === 'LEASE_LOST') this.lost = error;
        throw error;
      }
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writes.then(fn);
    this.writes = run.catch(() => {});
    return run;
  }

  private leaseEnd(): number {
    return (this.options.clock ?? Date.now)() + this.options.leaseMs;
  }

  private startHeartbeat(): void {
    this.timer = setInterval(
      () => {
        this.update({}).catch((error) =>
          this.options.logger.warn('could not renew the operation lease', { error: String(error) }),
        );
      },
      Math.max(200, Math.floor(this.options.leaseMs / 3)),
    );
    this.timer.unref();
  }
}

export type PhaseResult = 'next' | 'paused';

/** What every phase runner gets: the lease, a clock, and when this run must end. */
export interface PhaseRun {
  /** Drills: called with `after:<phase>` once a phase did its work, before it is marked done. */
  hold?: (point: string) => Promise<void> | void;
  lease: OperationLease;
  stateStore: StateStore;
  clock: () => number;
  runDeadline: number | undefined;
  log: Logger;
}

/** Phases shorter than this are not begun with less time left: the run ends at the boundary instead. */
const MIN_PHASE_MS = 5_000;
/** Phases that stop by themselves at the deadline (they use whatever time there is). */
const ELASTIC_PHASES = new Set<OperationPhase>(['drain', 'redrain', 'export']);

/**
 * Runs the operation's phases from the one it is in until 'done' or this run's deadline. Each runner
 * does its work (idempotently) and moves the operation on; 'paused' ends the run at that phase.
 */
export async function runPhases<R extends PhaseRun>(
  run: R,
  runners: Partial<Record<OperationPhase, (run: R) => Promise<PhaseResult>>>,
  onPhase?: (phase: string) => Promise<void> | void,
): Promise<'done' | 'paused'> {
  if (onPhase) run.hold = onPhase;
  for (;;) {
    run.lease.check();
    const phase = run.lease.operation.phase;
    if (phase === 'done') return 'done';
    const left = run.runDeadline === undefined ? Number.POSITIVE_INFINITY : run.runDeadline - run.clock();
    if (left < (ELASTIC_PHASES.has(phase) ? 1 : MIN_PHASE_MS)) return 'paused';
    await onPhase?.(phase);
    const runner = runners[phase];
    if (!runner) throw new Error(`no runner for phase ${phase} of ${run.lease.operation.kind}`);
    if ((await runner(run)) === 'paused') return 'paused';
  }
}

export async function saveData(run: PhaseRun, key: string, value: unknown): Promise<void> {
  await run.lease.verify();
  return run.stateStore.putOperationData(run.lease.operation.id, key, value);
}

export function savedData<T>(run: PhaseRun, key: string): Promise<T | undefined> {
  return run.stateStore.getOperationData<T>(run.lease.operation.id, key);
}

export async function advancePhase(run: PhaseRun): Promise<PhaseResult> {
  await run.hold?.(`after:${run.lease.operation.phase}`);
  await run.lease.advance();
  return 'next';
}

/** The operation as the control item has it now (when it is still this one), else as this run last saw it. */
export async function currentOperation(stateStore: StateStore, op: Operation): Promise<Operation> {
  const now = await stateStore.getControl().catch(() => undefined);
  return now?.operation?.id === op.id ? now.operation : op;
}

/** What the operation helpers below need of a failover's or failback's dependencies. */
export interface OperationContext {
  pair: string;
  stateStore: StateStore;
  owner?: string;
  leaseMs?: number;
  clock?: () => number;
  logger: Logger;
}

/** Where an operation returns when aborted before its flip. */
export interface StableState {
  state: PairState;
  activeCluster: string;
}

export interface AbortReport {
  pair: string;
  operationId: string;
  phase: OperationPhase;
  state: string;
  epoch: number;
  notes: string[];
}

const VERB = { failover: 'failing over', failback: 'failing back' } as const;

export function leaseOptionsOf(ctx: OperationContext, logger: Logger): LeaseOptions {
  return {
    stateStore: ctx.stateStore,
    owner: ctx.owner ?? defaultOwner(),
    leaseMs: ctx.leaseMs ?? 30_000,
    logger,
    ...(ctx.clock ? { clock: ctx.clock } : {}),
  };
}

/**
 * A request naming an operation (a continuation, a retried invocation) only resumes or reports it:
 * its report when it finished, an error when it is not the pair's current one or was aborted, and
 * undefined when it is to be resumed. Any request: refused while the other kind is unfinished.
 */
export async function namedOperation<R>(
  ctx: OperationContext,
  control: ControlState,
  kind: OperationKind,
  operationId: string | undefined,
): Promise<{ status: 'done'; operationId: string; report: R } | undefined> {
  const op = control.operation;
  const other = kind === 'failover' ? 'failback' : 'failover';
  if (op?.kind === other && !op.outcome)
    throw new StateError(
      'STATE_CONFLICT',
      `${other} ${op.id} of pair ${ctx.pair} is not finished (phase ${op.phase}): run \`kdr ${other}\` to finish it before ${VERB[kind]}`,
    );
  if (operationId === undefined) return undefined;
  if (op?.id !== operationId)
    throw new StateError(
      'STATE_CONFLICT',
      `operation ${operationId} is not pair ${ctx.pair}'s current operation (${op ? `${op.kind} ${op.id}` : 'none'})`,
    );
  if (op.outcome === 'aborted')
    throw new StateError('STATE_CONFLICT', `${kind} ${op.id} was aborted: ${control.reason ?? ''}`);
  if (op.outcome !== 'done') return undefined;
  const report = await ctx.stateStore.getOperationData<R>(op.id, 'report');
  return { status: 'done', operationId: op.id, report: report! };
}

/** Back to the stable state, conditional on the epoch only: whoever still runs the operation stops. */
export function returnToStable(
  ctx: OperationContext,
  control: { epoch: number; operation?: Operation },
  stable: StableState,
  reason: string,
): Promise<ControlState> {
  const owner = ctx.owner ?? defaultOwner();
  return ctx.stateStore.transition(control.epoch, {
    ...stable,
    operation: { ...control.operation!, outcome: 'aborted', finishedAt: Date.now(), leaseUntil: 0, owner },
    owner,
    reason,
  });
}

/** `--abort`: back to the stable state while that is safe (before the other cluster became active). */
export async function abortOperation(
  ctx: OperationContext,
  kind: OperationKind,
  stable: StableState,
): Promise<AbortReport> {
  const control = await ctx.stateStore.getControl();
  const op = control.operation;
  if (op?.kind !== kind || op.outcome)
    throw new StateError(
      'STATE_CONFLICT',
      `pair ${ctx.pair} has no ${kind} in progress to abort (${control.state}, epoch ${control.epoch})`,
    );
  const decision = abortDecision(op);
  if (decision.kind === 'unsafe') throw new StateError('STATE_CONFLICT', `cannot abort: ${decision.why}`);
  const notes = [...decision.notes];
  if (op.leaseUntil > Date.now() && ownerAlive(op.owner) !== false)
    notes.push(`${op.owner} still held the lease; its next step finds the pair moved and stops`);
  const next = await returnToStable(
    ctx,
    control,
    stable,
    `${kind} ${op.id} aborted by ${ctx.owner ?? defaultOwner()}`,
  );
  ctx.logger.warn(`${kind} aborted`, { operationId: op.id, phase: op.phase });
  return { pair: ctx.pair, operationId: op.id, phase: op.phase, state: next.state, epoch: next.epoch, notes };
}

/**
 * A run that failed: before the flip it returns the pair to the stable state (nothing applications use
 * has changed); after it the operation stays, to be resumed. The error says which.
 */
export async function failedOperation(
  run: PhaseRun,
  ctx: OperationContext,
  stable: StableState,
  error: unknown,
): Promise<unknown> {
  if (isKdrError(error) && (error.code === 'LEASE_LOST' || error.code === 'OPERATION_IN_PROGRESS'))
    return error;
  // A flip whose write applied but answered an error (a retried request) shows on the control item.
  const op = await currentOperation(ctx.stateStore, run.lease.operation);
  if (op.outcome) return error;
  const wrap = (message: string) =>
    isKdrError(error)
      ? new KdrError(error.code, message, { cause: error, details: { ...error.details, operationId: op.id } })
      : new KdrError('KAFKA_REQUEST_FAILED', message, { cause: error });
  if (flipped(op))
    return wrap(
      `${op.kind} ${op.id} stopped in phase ${op.phase} after the ${op.kind === 'failover' ? 'standby' : 'primary'} became active: ${describeError(error)}; run \`kdr ${op.kind}\` again to finish it`,
    );
  let back = `pair ${ctx.pair} is back to ${stable.state}`;
  try {
    await returnToStable(ctx, run.lease.control, stable, `${op.kind} aborted: ${describeError(error)}`);
  } catch (abortError) {
    run.log.error(`could not return the pair to ${stable.state}`, { error: describeError(abortError) });
    back = `pair ${ctx.pair} could not be returned to ${stable.state} (${describeError(abortError)}); run \`kdr ${op.kind} --abort\``;
  }
  return wrap(`${op.kind} aborted, ${back}: ${describeError(error)}`);
}

export type OperationOutcome<R> =
  | { status: 'done'; operationId: string; report: R }
  | { status: 'in-progress'; operationId: string; phase: OperationPhase; message: string };

/**
 * Runs a claimed operation's phases to 'done' (its saved report) or to this run's deadline (in-progress);
 * always releases the lease; a failure goes through failedOperation.
 */
export async function runOperation<R, Run extends PhaseRun>(
  run: Run,
  runners: Partial<Record<OperationPhase, (run: Run) => Promise<PhaseResult>>>,
  ctx: OperationContext & { onPhase?: (phase: string) => Promise<void> | void },
  stable: StableState,
): Promise<OperationOutcome<R>> {
  const { lease } = run;
  try {
    const ended = await runPhases(run, runners, ctx.onPhase);
    const op = lease.operation;
    await lease.release();
    if (ended === 'paused') {
      const message = `${op.kind} ${op.id} paused in phase ${op.phase} at this run's deadline; it continues in the next run`;
      run.log.info(message, { operationId: op.id, phase: op.phase });
      return { status: 'in-progress', operationId: op.id, phase: op.phase, message };
    }
    const report = await ctx.stateStore.getOperationData<R>(op.id, 'report');
    return { status: 'done', operationId: op.id, report: report! };
  } catch (error) {
    await lease.release();
    throw await failedOperation(run, ctx, stable, error);
  }
}

/** The report of an operation run without a deadline (the CLI, tests); in-progress is a TimeoutError. */
export function reportOf<R>(outcome: OperationOutcome<R>): R {
  if (outcome.status === 'done') return outcome.report;
  throw new TimeoutError(outcome.message, { details: { operationId: outcome.operationId } });
}
