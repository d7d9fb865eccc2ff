import { type Command, InvalidArgumentError } from 'commander';
import { translateOffset } from '../../services/translate.ts';
import { withRuntime } from '../context.ts';
import { emit } from '../output.ts';

export function nonNegativeInt(what: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
      throw new InvalidArgumentError(`expected ${what} as a whole number >= 0, got ${JSON.stringify(value)}`);
    }
    return Number(value);
  };
}

export function registerTranslate(program: Command): void {
  program
    .command('translate')
    .description(
      'translate a committed source offset to the standby offset that points at the same next record',
    )
    .requiredOption('--topic <topic>', 'source topic')
    .requiredOption('--partition <n>', 'partition', nonNegativeInt('a partition'))
    .requiredOption(
      '--offset <n>',
      'committed offset on the source (the next record to read)',
      nonNegativeInt('an offset'),
    )
    .option('--json', 'print as JSON')
    .action(async (options: { topic: string; partition: number; offset: number; json?: boolean }) => {
      const result = await withRuntime({}, ({ runtime }) =>
        translateOffset(runtime, { topic: options.topic, partition: options.partition }, options.offset),
      );
      emit(Boolean(options.json), result, () =>
        result.exact
          ? `${result.topic}-${result.partition}: source offset ${result.sourceOffset} -> standby offset ${result.standbyOffset}`
          : `${result.topic}-${result.partition}: ${result.note} (${result.standbyOffset})`,
      );
    });
}
