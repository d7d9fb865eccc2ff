import { rmSync } from 'node:fs';
import path from 'node:path';
import { checkRecordedCalls } from '../../infra/aws/iamReport.ts';
import { Lab } from '../../infra/local/lab.ts';
import { labPaths } from '../../infra/local/paths.ts';

/**
 * Brings the lab up once for the integration suite; stops it after only if this run started it. Every
 * AWS call a function makes during the run is recorded (KDR_AWS_CALL_LOG, inherited by the test workers
 * and the processes they start) and, at the end, evaluated against that function's role in the
 * packaged template: one denied call fails the run.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const lab = new Lab({ log: (line) => process.stderr.write(`[lab] ${line}\n`) });
  const wasUp = (await lab.probe()).up;
  if (!wasUp) await lab.up(1);
  const callLog = path.join(labPaths().root, 'aws-calls.jsonl');
  rmSync(callLog, { force: true });
  process.env.KDR_AWS_CALL_LOG = callLog;
  return async () => {
    try {
      process.stderr.write(`${await checkRecordedCalls(callLog)}\n`);
    } finally {
      if (!wasUp) await lab.down();
    }
  };
}
