import http from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { KdrError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';

/**
 * `kdr run`'s Prometheus endpoint: GET /metrics in the text exposition format (prom-client). The same
 * figures as `kdr status` and the Lambda functions' CloudWatch metrics: lag per partition in records and
 * seconds, records mirrored, failing partitions, checkpoint and snapshot age, the pair's epoch and state.
 */

export interface MetricsSnapshot {
  pair: string;
  state: string;
  epoch: number;
  checkpointAgeSeconds: number | null;
  snapshotAgeSeconds: number | null;
  partitions: {
    topic: string;
    partition: number;
    lagOffsets: number;
    lastMirroredAgeSeconds: number | null;
    /** Topic generation (1 until the topic is re-created on either side). */
    generation?: number;
    /** Ranges the source deleted before they were mirrored. */
    gaps?: { count: number }[];
  }[];
}

export class MetricsServer {
  readonly registry = new Registry();
  private server?: http.Server;
  private readonly mirrored: Counter;
  private readonly failing: Gauge;
  private counted = 0;

  constructor(
    private readonly read: () => Promise<MetricsSnapshot>,
    private readonly logger: Logger,
  ) {
    const registers = [this.registry];
    this.mirrored = new Counter({
      name: 'kdr_records_mirrored_total',
      help: 'Records this process copied to the standby',
      registers,
    });
    this.failing = new Gauge({
      name: 'kdr_failing_partitions',
      help: 'Partitions whose last batch failed (retried with backoff)',
      registers,
    });
    // The rest is read from the pair's state when Prometheus scrapes, once per scrape.
    let pending: Promise<MetricsSnapshot> | undefined;
    const snapshot = () => {
      pending ??= this.read().finally(() => setTimeout(() => (pending = undefined), 1000).unref());
      return pending;
    };
    const gauge = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (g: Gauge, s: MetricsSnapshot) => void,
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          this.reset();
          fill(this, await snapshot());
        },
      });
    gauge(
      'kdr_replication_lag_records',
      'Offsets on the source not yet mirrored',
      ['topic', 'partition'],
      (g, s) => {
        for (const p of s.partitions) g.set({ topic: p.topic, partition: String(p.partition) }, p.lagOffsets);
      },
    );
    gauge(
      'kdr_last_mirrored_age_seconds',
      'Age of the newest mirrored record (source timestamp)',
      ['topic', 'partition'],
      (g, s) => {
        for (const p of s.partitions)
          if (p.lastMirroredAgeSeconds !== null)
            g.set({ topic: p.topic, partition: String(p.partition) }, p.lastMirroredAgeSeconds);
      },
    );
    gauge(
      'kdr_topic_generation',
      'Generation of the topic in the offset map: +1 each time it was re-created on either side',
      ['topic', 'partition'],
      (g, s) => {
        for (const p of s.partitions)
          g.set({ topic: p.topic, partition: String(p.partition) }, p.generation ?? 1);
      },
    );
    gauge(
      'kdr_gap_offsets',
      'Source offsets deleted (retention, DeleteRecords) before they were mirrored, in the current generation',
      ['topic', 'partition'],
      (g, s) => {
        for (const p of s.partitions)
          g.set(
            { topic: p.topic, partition: String(p.partition) },
            (p.gaps ?? []).reduce((n, gap) => n + gap.count, 0),
          );
      },
    );
    gauge('kdr_checkpoint_age_seconds', 'Age of the newest consumer-group checkpoint', [], (g, s) => {
      if (s.checkpointAgeSeconds !== null) g.set(s.checkpointAgeSeconds);
    });
    gauge('kdr_snapshot_age_seconds', 'Age of the newest complete snapshot of the primary', [], (g, s) => {
      if (s.snapshotAgeSeconds !== null) g.set(s.snapshotAgeSeconds);
    });
    gauge(
      'kdr_epoch',
      'Epoch of the pair (bumped by every failover and failback step)',
      ['pair', 'state'],
      (g, s) => g.set({ pair: s.pair, state: s.state }, s.epoch),
    );
  }

  /** Progress of the mirror loop (running totals). */
  progress(p: { recordsMirrored: number; failingPartitions: number }): void {
    if (p.recordsMirrored > this.counted) this.mirrored.inc(p.recordsMirrored - this.counted);
    this.counted = Math.max(this.counted, p.recordsMirrored);
    this.failing.set(p.failingPartitions);
  }

  async listen(port: number, host = '127.0.0.1'): Promise<void> {
    this.server = http.createServer((request, response) => {
      if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
        response.writeHead(404).end('kdr serves GET /metrics\n');
        return;
      }
      this.registry
        .metrics()
        .then((body) => response.writeHead(200, { 'content-type': this.registry.contentType }).end(body))
        .catch((error: Error) => {
          this.logger.warn('collecting metrics failed', { error: error.message });
          response.writeHead(503).end(`collecting metrics failed: ${error.message}\n`);
        });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new KdrError(
            error.code === 'EADDRINUSE' ? 'PORT_IN_USE' : 'INPUT_INVALID',
            `cannot serve metrics on ${host}:${port} (${error.code}); set KDR_METRICS_PORT to a free port, or 0 for none`,
          ),
        ),
      );
      this.server!.listen(port, host, resolve);
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
