import type { Command } from 'commander';
import { Lab } from '../../../infra/local/lab.ts';
import { MetricsServer } from '../../adapters/http/metricsServer.ts';
import { loadConfig } from '../../config.ts';
import type { Runtime } from '../../runtime.ts';
import { pairStatus } from '../../services/status.ts';
import { stopSignal, withRuntime } from '../context.ts';
import { runMirrorLoop } from '../mirrorLoop.ts';
import { note } from '../output.ts';
import { formatLabStatus } from './lab.ts';
import { progressLine } from './mirror.ts';

/** True when the configuration points at the lab's clusters and moto, so `kdr run` may start the lab. */
function targetsLab(): boolean {
  const config = loadConfig();
  return (
    config.primary.brokers.join(',') === config.lab.primaryBrokers &&
    config.standby.brokers.join(',') === config.lab.standbyBrokers &&
    config.aws.endpoint === config.lab.awsEndpoint
  );
}

/** The pair's figures for Prometheus, read when it scrapes. */
function metricsServer(runtime: Runtime): MetricsServer {
  return new MetricsServer(async () => {
    const status = await pairStatus(runtime);
    const snapshots = await runtime.snapshotCatalog.list(runtime.config.primary.alias).catch(() => []);
    const newest = snapshots
      .map((e) => Date.parse(e.cutAt))
      .sort((a, b) => a - b)
      .at(-1);
    return {
      pair: status.pair,
      state: status.control.state,
      epoch: status.control.epoch,
      checkpointAgeSeconds: status.checkpoint.ageSeconds,
      snapshotAgeSeconds: newest === undefined ? null : (Date.now() - newest) / 1000,
      partitions: status.partitions,
    };
  }, runtime.logger);
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description(
      'run the DR service locally (what `npm start` runs): mirror, checkpoint and snapshot continuously; starts the lab first when targeting it',
    )
    .option('--no-lab', 'do not start the local lab, even when the configuration targets it')
    .action(async (options: { lab: boolean }) => {
      // Signals are taken from the start: a Ctrl-C while the lab is still starting must stop it too.
      const { stopped, isStopping } = stopSignal(note);
      const lab = new Lab({ log: note });
      const startLab = options.lab && targetsLab();
      const wasUp = startLab && (await lab.probe()).up;
      try {
        // A TLS configuration against the lab's ports means the TLS lab (`kdr lab up --tls`).
        if (startLab && !wasUp) await lab.up(1, { tls: loadConfig().primary.ssl });
        if (startLab) note(formatLabStatus(await lab.probe()));
        if (isStopping()) return;
        note('kdr run: mirroring; press Ctrl-C to stop');
        const summary = await withRuntime({}, async ({ runtime }) => {
          const metrics = runtime.config.metricsPort > 0 ? metricsServer(runtime) : undefined;
          if (metrics) {
            await metrics.listen(runtime.config.metricsPort);
            note(`kdr run: Prometheus metrics on http://127.0.0.1:${runtime.config.metricsPort}/metrics`);
          }
          try {
            return await runMirrorLoop(runtime, {
              untilCaughtUp: false,
              stopped,
              checkpointEveryMs: runtime.config.checkpoint.intervalMs,
              snapshotEveryMs: runtime.config.snapshot.intervalMs,
              onProgress: (p) => {
                metrics?.progress(p);
                if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${progressLine(p)}`);
              },
            });
          } finally {
            await metrics?.close();
          }
        });
        if (process.stderr.isTTY) process.stderr.write('\n');
        note(
          `kdr run: stopped after mirroring ${summary.recordsMirrored} records; committed what was mirrored`,
        );
      } finally {
        // Leave the machine as we found it: stop the lab only if this run started it.
        if (startLab && !wasUp) {
          const { stopped: names } = await lab.down();
          note(`stopped ${names.join(', ')}`);
        }
      }
    });
}
