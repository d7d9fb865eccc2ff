import type { Command } from 'commander';
import { Lab } from '../../../infra/local/lab.ts';
import { loadConfig } from '../../config.ts';
import { note } from '../output.ts';
import { formatLabStatus } from './lab.ts';

/** True when the configuration points at the lab's clusters and moto, so `kdr run` may start the lab. */
function targetsLab(): boolean {
  const config = loadConfig();
  return (
    config.primary.brokers.join(',') === config.lab.primaryBrokers &&
    config.standby.brokers.join(',') === config.lab.standbyBrokers &&
    config.aws.endpoint === config.lab.awsEndpoint
  );
}

/** Says so when a lab process died under `kdr run` (an operator's kill, an OOM). */
async function watchLab(lab: Lab, watching: boolean): Promise<void> {
  if (!watching) return;
  const status = await lab.probe();
  for (const p of status.processes.filter((p) => !p.running || !p.answering)) {
    note(
      `kdr run: lab process ${p.name} (pid ${p.pid}) is ${p.running ? 'not answering' : 'gone'}; log ${p.log}`,
    );
  }
}

/** Resolves with the first SIGINT/SIGTERM; later ones only say that kdr is still stopping. */
function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: string) => {
      if (received) return note(`kdr: still stopping (${signal} again ignored)`);
      received = true;
      note(`kdr: ${signal} received, stopping`);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run the DR service locally (what `npm start` runs); starts the lab first when targeting it')
    .option('--no-lab', 'do not start the local lab, even when the configuration targets it')
    .action(async (options: { lab: boolean }) => {
      // Signals are taken from the start: a Ctrl-C while the lab is still starting must stop it too.
      let stopRequested = false;
      const stopped = stopSignal().then(() => (stopRequested = true));
      const lab = new Lab({ log: note });
      const startLab = options.lab && targetsLab();
      const wasUp = startLab && (await lab.probe()).up;
      try {
        if (startLab && !wasUp) await lab.up(1);
        if (startLab) note(formatLabStatus(await lab.probe()));
        if (!stopRequested) note('kdr run: press Ctrl-C to stop');
        // The watchdog also keeps the event loop alive: signal listeners alone do not.
        const watchdog = setInterval(() => void watchLab(lab, startLab), 15_000);
        await stopped;
        clearInterval(watchdog);
      } finally {
        // Leave the machine as we found it: stop the lab only if this run started it.
        if (startLab && !wasUp) {
          const { stopped: names } = await lab.down();
          note(`stopped ${names.join(', ')}`);
        }
      }
    });
}
