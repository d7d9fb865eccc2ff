import { Lab } from '../../infra/local/lab.ts';

/** Brings the lab up once for the integration suite; stops it after only if this run started it. */
export default async function setup(): Promise<() => Promise<void>> {
  const lab = new Lab({ log: (line) => process.stderr.write(`[lab] ${line}\n`) });
  const wasUp = (await lab.probe()).up;
  if (!wasUp) await lab.up(1);
  return async () => {
    if (!wasUp) await lab.down();
  };
}
