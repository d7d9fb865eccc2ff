import { Command } from 'commander';
import { registerCheckpoint } from './commands/checkpoint.ts';
import { registerConfig } from './commands/config.ts';
import { registerFailback } from './commands/failback.ts';
import { registerFailover } from './commands/failover.ts';
import { registerLab } from './commands/lab.ts';
import { registerMirror } from './commands/mirror.ts';
import { registerRestore } from './commands/restore.ts';
import { registerRun } from './commands/run.ts';
import { registerSnapshot } from './commands/snapshot.ts';
import { registerStatus } from './commands/status.ts';
import { registerTopics } from './commands/topics.ts';
import { registerTranslate } from './commands/translate.ts';

/** The whole `kdr` command tree, built without running anything (the help test walks it). */
export function buildProgram(): Command {
  const program = new Command('kdr')
    .description(
      'kdr: disaster recovery for Apache Kafka (exactly-once mirroring, offset translation, snapshots, failover)',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  registerLab(program);
  registerConfig(program);
  registerRun(program);
  registerMirror(program);
  registerTranslate(program);
  registerStatus(program);
  registerTopics(program);
  registerCheckpoint(program);
  registerFailover(program);
  registerFailback(program);
  registerSnapshot(program);
  registerRestore(program);
  return program;
}
