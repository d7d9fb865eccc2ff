import type { Command } from 'commander';
import { loadConfig, redactConfig } from '../../config.ts';
import { emit } from '../output.ts';

export function registerConfig(program: Command): void {
  program
    .command('config')
    .description('print the effective configuration (from KDR_* and AWS_* variables; secrets redacted)')
    .option('--json', 'print as JSON')
    .action((options: { json?: boolean }) => {
      const config = redactConfig(loadConfig());
      emit(Boolean(options.json), config, () => JSON.stringify(config, null, 2));
    });
}
