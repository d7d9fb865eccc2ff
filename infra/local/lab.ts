import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import kafkajs from 'kafkajs';
import pLimit from 'p-limit';
import { LAB_DEFAULTS, loadConfig } from '../../src/config.ts';
import { describeError, LabError } from '../../src/errors.ts';
import { checkPrerequisites, ensureKafka, ensureMoto, type KafkaDistribution } from './installs.ts';
import type { LambdaApi } from './lambdaApi.ts';
import { ensureLambdaRuntime, LAMBDA_CONTAINER_MARK } from './lambdaRuntime.ts';
import { type LabPaths, labPaths, REPO_ROOT } from './paths.ts';
import {
  hasMarker,
  isAlive,
  type LabProcess,
  pidListeningOn,
  portAnswers,
  portIsFree,
  processesWithEnvironment,
  spawnDetached,
  stopProcess,
  tail,
} from './processes.ts';
import { provisionState } from './provision.ts';
import { ensureLabPki, LAB_TLS_PASSWORD, pkiFiles } from './tls.ts';
import {
  BROKER_COUNTS,
  type BrokerCount,
  brokerProperties,
  type ClusterName,
  KAFKA_VERSION,
  LAB_HOST,
  LAB_SASL,
  type LabCluster,
  type LabNode,
  labClusters,
  MTLS_PORT_OFFSET,
  motoPort,
  nodeName,
} from './topology.ts';

/**
 * The local DR lab: two real KRaft Kafka clusters (primary, standby) and moto (S3 + DynamoDB), started as
 * detached processes whose pids are kept in .lab/state.json, so that `down` stops exactly what `up` started.
 */

export interface LabState {
  brokers: BrokerCount;
  /** Brokers take SCRAM (LAB_SASL) instead of plaintext. */
  sasl?: boolean;
  /** Brokers listen with TLS (the lab CA, infra/local/tls.ts) instead of plaintext. */
  tls?: boolean;
  /** Brokers of a cluster advertise their port plus this (tests put a TCP proxy there). */
  advertiseShift?: Partial<Record<ClusterName, number>>;
  startedAt: string;
  kafka: KafkaDistribution;
  processes: LabProcess[];
}

export interface ProcessStatus extends LabProcess {
  running: boolean;
  answering: boolean;
}

export interface LabStatus {
  up: boolean;
  brokers: BrokerCount | null;
  sasl: boolean;
  /** A TLS lab: the CA to trust, the client certificate the mTLS listeners require, their bootstraps. */
  tls: null | {
    caPem: string;
    clientChainPem: string;
    clientKeyPem: string;
    /** The key encrypted (PBE-SHA1-3DES) with the password LAB_TLS_PASSWORD. */
    clientKeyEncryptedPem: string;
    mtls: { name: ClusterName; bootstrap: string }[];
  };
  startedAt: string | null;
  kafkaVersion: string;
  clusters: { name: ClusterName; bootstrap: string }[];
  awsEndpoint: string;
  processes: ProcessStatus[];
  /** `kdr lab up --lambda`: the packaged functions, their event sources and schedules. */
  lambda: null | LambdaStatus;
}

/** What `kdr lab up --lambda` started, kept in .lab/lambda.json (not a part of the lab's shape). */
export interface LambdaProcess extends LabProcess {
  params: string[];
  startedAt: string;
}

export interface LambdaStatus extends LambdaProcess {
  running: boolean;
  answering: boolean;
  apiUrl: string;
  /** The lab Lambda API's own report: containers per function, mappings with what they delivered. */
  report?: ReturnType<LambdaApi['labStatus']>;
}

export interface LabOptions {
  log?: (line: string) => void;
  /** Bound on the wait for every broker and moto to answer. */
  readyTimeoutMs?: number;
  dir?: string;
  /** Shifts every lab port; defaults to KDR_LAB_PORT_OFFSET. */
  portOffset?: number;
}

const DEFAULT_READY_TIMEOUT_MS = 120_000;

export class Lab {
  readonly paths: LabPaths;
  private readonly log: (line: string) => void;
  private readonly readyTimeoutMs: number;
  readonly portOffset: number;

  constructor(options: LabOptions = {}) {
    this.paths = labPaths(options.dir);
    this.portOffset = options.portOffset ?? loadConfig().lab.portOffset;
    this.log = options.log ?? (() => {});
    this.readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  }

  get awsEndpoint(): string {
    return `http://${LAB_HOST}:${motoPort(this.portOffset)}`;
  }

  /** The marker put on every command line we start: pids are recycled, markers are not. */
  private get marker(): string {
    return `-Dkdr.lab=${this.paths.root}`;
  }

  readState(): LabState | undefined {
    if (!existsSync(this.paths.state)) return undefined;
    return JSON.parse(readFileSync(this.paths.state, 'utf8')) as LabState;
  }

  private writeState(state: LabState): void {
    writeFileSync(this.paths.state, `${JSON.stringify(state, null, 2)}\n`);
  }

  private ours(p: LabProcess): boolean {
    return hasMarker(p.pid, this.marker);
  }

  /** Installs what the lab needs (Kafka jars, moto) without starting anything: used by .ci/run. */
  async install(): Promise<void> {
    mkdirSync(this.paths.root, { recursive: true });
    await checkPrerequisites(this.paths);
    await ensureKafka(this.paths, this.log);
    await ensureMoto(this.paths, this.log);
    await ensureLambdaRuntime(this.paths.cache, this.log);
  }

  /** Starts the lab, or confirms it already runs with the same shape (idempotent). */
  async up(
    brokers: BrokerCount = 1,
    options: { sasl?: boolean; tls?: boolean; advertiseShift?: Partial<Record<ClusterName, number>> } = {},
  ): Promise<LabStatus> {
    const sasl = Boolean(options.sasl);
    const tls = Boolean(options.tls);
    if (!BROKER_COUNTS.includes(brokers)) {
      throw new LabError(
        'LAB_STATE_CONFLICT',
        `--brokers must be one of ${BROKER_COUNTS.join(', ')}, got ${brokers}`,
      );
    }
    if (sasl && tls)
      throw new LabError('LAB_STATE_CONFLICT', '--sasl and --tls cannot be combined (yet): choose one');
    mkdirSync(this.paths.root, { recursive: true });
    return this.withLock(async () => {
      const existing = this.readState();
      if (existing) {
        const alive = existing.processes.filter((p) => isAlive(p.pid) && this.ours(p));
        if (alive.length === existing.processes.length) {
          if (
            existing.brokers !== brokers ||
            Boolean(existing.sasl) !== sasl ||
            Boolean(existing.tls) !== tls
          ) {
            const shape = (n: number, s: boolean | undefined, t: boolean | undefined) =>
              `${n} broker(s) per cluster${s ? ' with SASL' : ''}${t ? ' with TLS' : ''}`;
            throw new LabError(
              'LAB_STATE_CONFLICT',
              `the lab is already up with ${shape(existing.brokers, existing.sasl, existing.tls)}, not ${shape(brokers, sasl, tls)}; run \`kdr lab down\` first`,
            );
          }
          this.log('lab already up; checking that every process answers');
          await this.waitReady(existing);
          return this.status();
        }
        this.log(
          `lab state is stale (${existing.processes.length - alive.length} process(es) gone); restarting it`,
        );
        await this.stopAll(existing);
      }
      await checkPrerequisites(this.paths);
      await this.checkPorts(brokers, tls);
      const kafka = await ensureKafka(this.paths, this.log);
      const motoServer = await ensureMoto(this.paths, this.log);
      if (tls) await ensureLabPki(this.tlsDir, this.log);
      const state: LabState = {
        brokers,
        ...(sasl ? { sasl } : {}),
        ...(tls ? { tls } : {}),
        ...(options.advertiseShift ? { advertiseShift: options.advertiseShift } : {}),
        startedAt: new Date().toISOString(),
        kafka,
        processes: [],
      };
      try {
        await this.startAll(state, motoServer);
        await this.waitReady(state);
        const config = loadConfig({
          ...process.env,
          AWS_ENDPOINT_URL: this.awsEndpoint,
          KDR_LAB_PORT_OFFSET: String(this.portOffset),
        });
        const created = await provisionState(config, this.paths.stateResources);
        for (const what of created) this.log(`created ${what}`);
      } catch (error) {
        this.log('lab did not come up; stopping what was started (logs are kept)');
        await this.stopAll(state);
        throw error;
      }
      return this.status();
    });
  }

  /** Stops every process the lab started (by pid), then removes broker data: moto's state lives in memory. */
  async down(): Promise<{ stopped: string[] }> {
    return this.withLock(async () => {
      const state = this.readState();
      if (!state) return { stopped: [] };
      const stopped = await this.stopAll(state);
      return { stopped };
    });
  }

  status(): LabStatus {
    const state = this.readState();
    const brokers = state?.brokers ?? 1;
    return {
      up: false,
      brokers: state?.brokers ?? null,
      sasl: Boolean(state?.sasl),
      tls: state?.tls ? this.tlsStatus(brokers) : null,
      startedAt: state?.startedAt ?? null,
      kafkaVersion: KAFKA_VERSION,
      clusters: labClusters(brokers, this.portOffset).map((c) => ({ name: c.name, bootstrap: c.bootstrap })),
      awsEndpoint: this.awsEndpoint,
      processes: (state?.processes ?? []).map((p) => ({
        ...p,
        running: isAlive(p.pid) && this.ours(p),
        answering: false,
      })),
      lambda: null,
    };
  }

  /** Where a TLS lab keeps its CA and certificates (kept across `lab up`s, removed by nothing). */
  get tlsDir(): string {
    return path.join(this.paths.root, 'tls');
  }

  private tlsStatus(brokers: BrokerCount): NonNullable<LabStatus['tls']> {
    const files = pkiFiles(this.tlsDir);
    return {
      caPem: files.caPem,
      clientChainPem: files.clientChainPem,
      clientKeyPem: files.clientKeyPem,
      clientKeyEncryptedPem: files.clientKeyEncryptedPem,
      mtls: labClusters(brokers, this.portOffset).map((c) => ({ name: c.name, bootstrap: c.mtlsBootstrap })),
    };
  }

  /** status() plus a TCP probe of every port; `up` only when every process runs and answers. */
  async probe(): Promise<LabStatus> {
    const status = this.status();
    for (const p of status.processes) p.answering = p.running && (await portAnswers(p.port));
    status.up = status.processes.length > 0 && status.processes.every((p) => p.running && p.answering);
    status.lambda = await this.probeLambda();
    return status;
  }

  private get lambdaFile(): string {
    return path.join(this.paths.root, 'lambda.json');
  }

  readLambda(): LambdaProcess | undefined {
    if (!existsSync(this.lambdaFile)) return undefined;
    return JSON.parse(readFileSync(this.lambdaFile, 'utf8')) as LambdaProcess;
  }

  private async probeLambda(): Promise<LambdaStatus | null> {
    const lambda = this.readLambda();
    if (!lambda) return null;
    const apiUrl = `http://${LAB_HOST}:${lambda.port}`;
    const running = isAlive(lambda.pid) && this.ours(lambda);
    const report = running ? await httpJson(`${apiUrl}/lab/status`) : undefined;
    return {
      ...lambda,
      running,
      answering: report !== undefined,
      apiUrl,
      ...(report ? { report: report as ReturnType<LambdaApi['labStatus']> } : {}),
    };
  }

  /**
   * `kdr lab up --lambda`: the packaged stack run as Lambda runs it (infra/local/lambdaLabMain.ts), its
   * Lambda API on a port of the lab's. Idempotent with the same params.
   */
  async upLambda(params: string[] = []): Promise<LambdaStatus> {
    await this.withLock(async () => {
      const state = this.requireState();
      if (!state.processes.every((p) => isAlive(p.pid) && this.ours(p)))
        throw new LabError('LAB_STATE_CONFLICT', 'the lab is not fully up; run `kdr lab up` first');
      const existing = this.readLambda();
      if (existing && isAlive(existing.pid) && this.ours(existing)) {
        if (JSON.stringify(existing.params) === JSON.stringify(params)) return;
        throw new LabError(
          'LAB_STATE_CONFLICT',
          `the lab's Lambda functions already run with params ${JSON.stringify(existing.params)}, not ${JSON.stringify(params)}; run \`kdr lab stop-lambda\` first`,
        );
      }
      await ensureLambdaRuntime(this.paths.cache, this.log);
      const port = LAB_DEFAULTS.lambdaApiPort + this.portOffset;
      if (await portAnswers(port))
        throw new LabError(
          'LAB_STATE_CONFLICT',
          `port ${port} (the lab's Lambda API) is already in use by another process`,
        );
      const log = path.join(this.paths.logs, 'lambda.log');
      const main = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lambdaLabMain.ts');
      this.log(`starting the packaged functions under the Lambda emulator (API on ${LAB_HOST}:${port})`);
      const pid = spawnDetached(process.execPath, ['--import', 'tsx', main, this.marker], {
        log,
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          KDR_LAB_PORT_OFFSET: String(this.portOffset),
          KDR_LAB_DIR: this.paths.root,
          KDR_LAB_LAMBDA_PORT: String(port),
          KDR_LAB_LAMBDA_PARAMS: JSON.stringify(params),
        },
      });
      const lambda: LambdaProcess = {
        name: 'lambda',
        role: 'lambda',
        pid,
        port,
        log,
        params,
        startedAt: new Date().toISOString(),
      };
      writeFileSync(this.lambdaFile, `${JSON.stringify(lambda, null, 2)}\n`);
      // Packaging (sls package) comes first: about 15 s here.
      const deadline = Date.now() + 300_000;
      while (!(await httpJson(`http://${LAB_HOST}:${port}/lab/status`))) {
        if (!isAlive(pid))
          throw new LabError(
            'LAB_START_FAILED',
            `the lab's Lambda process exited while starting; log ${log}, last lines:\n${tail(log)}`,
          );
        if (Date.now() > deadline)
          throw new LabError(
            'LAB_START_FAILED',
            `the lab's Lambda API did not answer within 300 s; log ${log}`,
          );
        await sleep(500);
      }
    });
    return (await this.probeLambda())!;
  }

  /**
   * Stops what `upLambda` started: SIGTERM (it kills its containers), then SIGKILL to whatever is left:
   * the emulators run in process groups of their own, and carry LAMBDA_CONTAINER_MARK so that they are
   * found even when the process that started them was killed.
   */
  async stopLambda(): Promise<boolean> {
    const lambda = this.readLambda();
    if (!lambda) return false;
    let stopped = false;
    if (isAlive(lambda.pid) && this.ours(lambda)) {
      await stopProcess(lambda.pid, 10_000);
      stopped = true;
    }
    const left = processesWithEnvironment(`${LAMBDA_CONTAINER_MARK}=${this.paths.root}`);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    if (left.length > 0) this.log(`killed ${left.length} Lambda container process(es) left behind`);
    rmSync(this.lambdaFile, { force: true });
    return stopped || left.length > 0;
  }

  /** Stops the brokers of one cluster (data kept), to test how kdr behaves when a cluster is down. */
  async stopCluster(cluster: ClusterName, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const state = this.requireState();
    const targets = state.processes.filter((p) => p.role === 'broker' && p.name.startsWith(`${cluster}-`));
    await Promise.all(targets.map((p) => this.stopOne(p, signal)));
  }

  /** Stops one broker node (data kept). */
  async stopNode(
    cluster: ClusterName,
    nodeId: number,
    signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM',
  ): Promise<void> {
    const state = this.requireState();
    const target = state.processes.find((p) => p.name === nodeName({ cluster, nodeId }));
    if (target) await this.stopOne(target, signal);
  }

  /** Starts the stopped brokers of a cluster again on their existing data and waits until they answer. */
  async startCluster(cluster: ClusterName): Promise<void> {
    const state = this.requireState();
    const spec = labClusters(state.brokers, this.portOffset).find((c) => c.name === cluster)!;
    for (const node of spec.nodes) {
      const name = nodeName(node);
      const current = state.processes.find((p) => p.name === name);
      if (current && isAlive(current.pid) && this.ours(current)) continue;
      const started = this.startBroker(state, node);
      state.processes = [...state.processes.filter((p) => p.name !== name), started];
      this.writeState(state);
    }
    await this.waitReady(state);
  }

  private requireState(): LabState {
    const state = this.readState();
    if (!state) throw new LabError('LAB_STATE_CONFLICT', 'the lab is not up; run `kdr lab up` first');
    return state;
  }

  private async stopOne(p: LabProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (!isAlive(p.pid) || !this.ours(p)) return;
    if (signal === 'SIGKILL') {
      process.kill(p.pid, 'SIGKILL');
      for (let i = 0; i < 100 && isAlive(p.pid); i++) await sleep(50);
    } else {
      await stopProcess(p.pid, 30_000);
    }
  }

  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + 10 * 60_000;
    for (;;) {
      try {
        closeSync(openSync(this.paths.lock, 'wx'));
        writeFileSync(this.paths.lock, String(process.pid));
        break;
      } catch {
        const holder = Number(readFileSync(this.paths.lock, 'utf8') || '0');
        if (!holder || !isAlive(holder)) {
          rmSync(this.paths.lock, { force: true });
          continue;
        }
        if (Date.now() > deadline) {
          throw new LabError(
            'LAB_STATE_CONFLICT',
            `another kdr process (pid ${holder}) holds ${this.paths.lock}`,
          );
        }
        await sleep(200);
      }
    }
    try {
      return await fn();
    } finally {
      try {
        unlinkSync(this.paths.lock);
      } catch {
        // already gone
      }
    }
  }

  private async checkPorts(brokers: BrokerCount, tls: boolean): Promise<void> {
    const wanted: { port: number; role: string }[] = [
      { port: motoPort(this.portOffset), role: 'moto (S3, DynamoDB)' },
    ];
    for (const cluster of labClusters(brokers, this.portOffset)) {
      for (const node of cluster.nodes) {
        wanted.push({ port: node.brokerPort, role: `${nodeName(node)} broker listener` });
        wanted.push({ port: node.controllerPort, role: `${nodeName(node)} controller listener` });
        if (tls)
          wanted.push({ port: node.brokerPort + MTLS_PORT_OFFSET, role: `${nodeName(node)} mTLS listener` });
      }
    }
    const busy: string[] = [];
    for (const { port, role } of wanted) {
      if (!(await portIsFree(port))) {
        const pid = pidListeningOn(port);
        busy.push(`port ${port} (${role}) is already in use${pid ? ` by pid ${pid}` : ''}`);
      }
    }
    if (busy.length > 0) {
      throw new LabError(
        'PORT_IN_USE',
        `cannot start the lab:\n  ${busy.join('\n  ')}\nstop whatever holds these ports (a lab started from another directory? try \`kdr lab down\` there)`,
        { details: { busy } },
      );
    }
  }

  private async startAll(state: LabState, motoServer: string): Promise<void> {
    rmSync(this.paths.data, { recursive: true, force: true });
    for (const dir of [this.paths.data, this.paths.logs, this.paths.config])
      mkdirSync(dir, { recursive: true });
    const clusters = labClusters(state.brokers, this.portOffset);
    // Formatting runs a JVM per node; two at a time on a 2-core machine.
    const limit = pLimit(2);
    await Promise.all(
      clusters.map((cluster) => {
        const clusterId = kafkaClusterId();
        return Promise.all(
          cluster.nodes.map((node) => limit(() => this.formatNode(state, cluster, node, clusterId))),
        );
      }),
    );
    for (const cluster of clusters) {
      for (const node of cluster.nodes) {
        state.processes.push(this.startBroker(state, node));
        this.writeState(state);
      }
    }
    const log = path.join(this.paths.logs, 'moto.log');
    const port = motoPort(this.portOffset);
    this.log(`starting moto on ${this.awsEndpoint}`);
    // Through python -c so that the lab's marker is on moto's command line too (the venv may be shared),
    // with the lab's patches applied first (moto_patches.py says why).
    const python = path.join(path.dirname(motoServer), 'python');
    const launch =
      'import sys; exec(open(sys.argv[2]).read()); from moto.server import main; sys.argv = ["moto_server"] + sys.argv[3:]; main()';
    const patches = path.join(path.dirname(fileURLToPath(import.meta.url)), 'moto_patches.py');
    const pid = spawnDetached(
      python,
      ['-c', launch, this.marker, patches, '-H', LAB_HOST, '-p', String(port)],
      { log },
    );
    state.processes.push({ name: 'moto', role: 'moto', pid, port, log });
    this.writeState(state);
  }

  private nodeFiles(node: LabNode) {
    const name = nodeName(node);
    return {
      properties: path.join(this.paths.config, `${name}.properties`),
      dataDir: path.join(this.paths.data, name),
      log: path.join(this.paths.logs, `${name}.log`),
    };
  }

  private async formatNode(
    state: LabState,
    cluster: LabCluster,
    node: LabNode,
    clusterId: string,
  ): Promise<void> {
    const files = this.nodeFiles(node);
    const pki = pkiFiles(this.tlsDir);
    writeFileSync(
      files.properties,
      brokerProperties(cluster, node, files.dataDir, {
        sasl: Boolean(state.sasl),
        ...(state.tls
          ? { tls: { keystore: pki.brokerKeystore, truststore: pki.truststore, password: LAB_TLS_PASSWORD } }
          : {}),
        advertiseShift: state.advertiseShift?.[cluster.name] ?? 0,
      }),
    );
    // SCRAM users live in the KRaft metadata: bootstrapped here, before the first start.
    const scram = state.sasl
      ? [LAB_SASL.admin, LAB_SASL.client].flatMap((u) =>
          ['SCRAM-SHA-512', 'SCRAM-SHA-256'].flatMap((m) => [
            '--add-scram',
            `${m}=[name=${u.username},password=${u.password}]`,
          ]),
        )
      : [];
    const result = await execa(
      'java',
      [
        '-Xmx256m',
        `-Dlog4j2.configurationFile=${this.paths.toolsLog4j}`,
        '-cp',
        path.join(state.kafka.libs, '*'),
        'kafka.tools.StorageTool',
        'format',
        '-t',
        clusterId,
        '-c',
        files.properties,
        ...scram,
      ],
      { reject: false, all: true, timeout: 120_000 },
    );
    if (result.exitCode !== 0) {
      throw new LabError(
        'LAB_START_FAILED',
        `formatting the storage of ${nodeName(node)} failed:\n${result.all}`,
      );
    }
  }

  private startBroker(state: LabState, node: LabNode): LabProcess {
    const files = this.nodeFiles(node);
    const heap = process.env.KDR_LAB_BROKER_HEAP || '384m';
    this.log(`starting ${nodeName(node)} broker on ${LAB_HOST}:${node.brokerPort}`);
    const pid = spawnDetached(
      'java',
      [
        '-Xms128m',
        `-Xmx${heap}`,
        '-XX:+UseG1GC',
        '-XX:MaxGCPauseMillis=20',
        '-XX:+ExitOnOutOfMemoryError',
        '-Djava.awt.headless=true',
        this.marker,
        `-Dlog4j2.configurationFile=${this.paths.brokerLog4j}`,
        '-cp',
        path.join(state.kafka.libs, '*'),
        'kafka.Kafka',
        files.properties,
      ],
      { log: files.log },
    );
    return { name: nodeName(node), role: 'broker', pid, port: node.brokerPort, log: files.log };
  }

  /** Bounded wait: every process alive and answering, every broker sees its whole cluster, moto answers HTTP. */
  private async waitReady(state: LabState): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    const pending = new Map(state.processes.map((p) => [p.name, p]));
    let lastProblem = new Map<string, string>();
    while (pending.size > 0) {
      const problems = new Map<string, string>();
      for (const p of [...pending.values()]) {
        if (!isAlive(p.pid)) {
          throw new LabError(
            'LAB_START_FAILED',
            `${p.name} (pid ${p.pid}) exited while starting; log ${p.log}, last lines:\n${tail(p.log)}`,
            { details: { process: p.name, log: p.log } },
          );
        }
        const problem = await this.readinessProblem(state, p);
        if (problem) problems.set(p.name, problem);
        else pending.delete(p.name);
      }
      lastProblem = problems;
      if (pending.size === 0) break;
      if (Date.now() > deadline) {
        const [name, problem] = [...lastProblem.entries()][0] ?? ['?', 'unknown'];
        const p = pending.get(name)!;
        throw new LabError(
          'LAB_START_FAILED',
          `${name} (pid ${p.pid}) did not become ready within ${this.readyTimeoutMs / 1000}s (${problem}); log ${p.log}, last lines:\n${tail(p.log)}`,
          { details: { process: name, log: p.log, pending: [...pending.keys()] } },
        );
      }
      await sleep(500);
    }
  }

  private async readinessProblem(state: LabState, p: LabProcess): Promise<string | undefined> {
    if (!(await portAnswers(p.port))) return `port ${p.port} not accepting connections`;
    if (p.role === 'moto') {
      return httpProblem(`http://${LAB_HOST}:${p.port}/moto-api/`);
    }
    const tls = state.tls ? { ca: [readFileSync(pkiFiles(this.tlsDir).caPem, 'utf8')] } : undefined;
    return brokerReadiness(`${LAB_HOST}:${p.port}`, state.brokers, Boolean(state.sasl), tls);
  }

  private async stopAll(state: LabState): Promise<string[]> {
    const stopped: string[] = [];
    // The functions first: their containers hold connections to the brokers.
    if (await this.stopLambda()) stopped.push('lambda');
    // Brokers and moto in parallel: the data is removed right after, so a clean shutdown buys nothing.
    await Promise.all(
      state.processes.map(async (p) => {
        if (isAlive(p.pid) && this.ours(p)) {
          await stopProcess(p.pid, 5_000);
          stopped.push(p.name);
        }
      }),
    );
    rmSync(this.paths.data, { recursive: true, force: true });
    rmSync(this.paths.state, { force: true });
    return stopped.sort();
  }
}

const { Kafka, logLevel } = kafkajs;

/** The JSON a URL answers with 200, or undefined. */
function httpJson(url: string): Promise<unknown> {
  return new Promise((resolve) => {
    const request = http.get(url, { timeout: 2000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (c: Buffer) => chunks.push(c));
      response.on('end', () => {
        try {
          resolve(
            response.statusCode === 200 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined,
          );
        } catch {
          resolve(undefined);
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 2 s')));
    request.on('error', () => resolve(undefined));
  });
}

/** undefined when the URL answers 200; node:http, because fetch refuses some ports (6566, 10080, ...). */
function httpProblem(url: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const request = http.get(url, { timeout: 2000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200 ? undefined : `HTTP ${response.statusCode}`);
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 2 s')));
    request.on('error', (error) => resolve(describeError(error)));
  });
}

/** A metadata request to one broker; ready when it answers and sees every broker of its cluster. */
async function brokerReadiness(
  broker: string,
  expected: number,
  sasl: boolean,
  tls?: { ca: string[] },
): Promise<string | undefined> {
  const kafka = new Kafka({
    brokers: [broker],
    ...(tls ? { ssl: tls } : {}),
    ...(sasl
      ? {
          sasl: {
            mechanism: LAB_SASL.mechanism,
            username: LAB_SASL.client.username,
            password: LAB_SASL.client.password,
          },
        }
      : {}),
    clientId: 'kdr-lab-probe',
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    requestTimeout: 5000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    if (cluster.brokers.length < expected) return `sees ${cluster.brokers.length}/${expected} brokers`;
    return undefined;
  } catch (error) {
    return `metadata request failed: ${describeError(error)}`;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'. */
function kafkaClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}
