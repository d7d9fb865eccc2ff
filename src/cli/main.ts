import { CommanderError } from 'commander';
import { exitWhenDone, fail } from './output.ts';
import { buildProgram } from './program.ts';

const program = buildProgram();

try {
  await program.parseAsync(process.argv);
  await exitWhenDone();
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version exit 0; usage errors were already printed by commander.
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  fail(error, process.argv.includes('--json'));
}
