import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../../src/cli/program.ts';

/** Every command, as `kdr a b`, with its Command. */
function walk(command: Command, prefix: string[] = []): [string, Command][] {
  return command.commands.flatMap((sub) => {
    const name = [...prefix, sub.name()];
    return [[name.join(' '), sub] as [string, Command], ...walk(sub, name)];
  });
}

const commands = walk(buildProgram());

describe('kdr --help', () => {
  it('has every command the docs name', () => {
    expect(commands.map(([name]) => name)).toEqual(
      expect.arrayContaining([
        'lab up',
        'lab down',
        'lab status',
        'run',
        'mirror',
        'translate',
        'status',
        'topics sync',
        'checkpoint',
        'failover',
        'failback',
        'snapshot',
        'verify',
        'restore',
      ]),
    );
  });

  it.each(commands)('kdr %s has a description, a usage line and documented options', (name, command) => {
    expect(command.description().length, name).toBeGreaterThan(10);
    const help = command.helpInformation();
    expect(help).toContain(`Usage: kdr ${name}`);
    for (const option of command.options)
      expect(option.description.length, `${name} ${option.flags}`).toBeGreaterThan(3);
  });

  // Commands that print data; `run` serves /metrics instead, and the lab's install, stop-cluster and
  // start-cluster print progress only.
  const noData = ['run', 'lab install', 'lab stop-cluster', 'lab start-cluster'];
  it.each(commands.filter(([name, c]) => c.commands.length === 0 && !noData.includes(name)))(
    'kdr %s can print its result as JSON for scripts',
    (name, command) => {
      expect(
        command.options.map((o) => o.long),
        name,
      ).toContain('--json');
    },
  );
});
