import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../../infra/local/paths.ts';
import type { KdrConfig } from '../../src/config.ts';
import { KDR_BIN, runKdr } from './cli.ts';
import { config, eventually, KAFKA_TOOLS, kafkaTool, readWithKcat, uniqueName } from './lab.ts';

/**
 * What the failover/failback drills share: a pair of their own, a `kdr` command killed (SIGKILL of its
 * process group) exactly when a phase begins, and independent checks with Kafka's own tools.
 */

export function ownDrillPair(prefix: string) {
  const topic = uniqueName(`${prefix}-t`);
  const group = uniqueName(`${prefix}-g`);
  const env = {
    KDR_PAIR: uniqueName(`${prefix}-pair`),
    KDR_MIRROR_GROUP_ID: uniqueName(`${prefix}-mirror`),
    KDR_TOPICS: topic,
    KDR_GROUPS: group,
  };
  return { topic, group, env };
}

/** Runs `kdr <args>` until it says it holds at `phase`, then kills its whole process group. */
export async function killAtPhase(args: string[], phase: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [KDR_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, KDR_DRILL_HOLD_PHASE: phase },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const held = `holding at phase ${phase}`;
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  await eventually(
    `kdr ${args.join(' ')} reaching phase ${phase}`,
    () => {
      if (exitCode !== undefined)
        throw new Error(`kdr ${args.join(' ')} exited (${exitCode}) before phase ${phase}:\n${output}`);
      return output.includes(held);
    },
    120_000,
  );
  process.kill(-child.pid!, 'SIGKILL');
  await exited;
  return output;
}

export async function kdrJson(args: string[], env: Record<string, string>) {
  const result = await runKdr([...args, '--json'], { env });
  let json: any;
  try {
    json = JSON.parse(result.stdout);
  } catch {
    json = undefined;
  }
  return { ...result, json };
}

/**
 * Committed offsets of a group as Kafka's ConsumerGroupCommand describes them, per partition; on another
 * lab with `cfg`, with client settings (TLS) from a `commandConfig` properties file.
 */
export async function describeGroup(
  cluster: 'primary' | 'standby',
  group: string,
  topic: string,
  options: { cfg?: KdrConfig; commandConfig?: string } = {},
): Promise<Map<number, number>> {
  const bootstrap = (options.cfg ?? config)[cluster].brokers.join(',');
  const out = await kafkaTool(KAFKA_TOOLS.consumerGroups, [
    '--bootstrap-server',
    bootstrap,
    ...(options.commandConfig ? ['--command-config', options.commandConfig] : []),
    '--describe',
    '--group',
    group,
    '--offsets',
  ]);
  const offsets = new Map<number, number>();
  for (const line of (out.all ?? out.stdout).split('\n')) {
    const cols = line.trim().split(/\s+/);
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    if (cols[1] === topic && /^\d+$/.test(cols[2] ?? '') && /^\d+$/.test(cols[3] ?? ''))
      offsets.set(Number(cols[2]), Number(cols[3]));
  }
  return offsets;
}

/** The source offsets (kdr.src) of every copy on a cluster's partition, in log order, with their offsets. */
export async function copiesOn(cluster: 'primary' | 'standby', topic: string, partition: number) {
  const records = await readWithKcat(cluster, topic, { partition });
  return records.map((r) => {
    const src = r.headers
      .filter(([k]) => k === 'kdr.src')
      .at(-1)?.[1]
      ?.toString();
    return { offset: r.offset, src: src ? Number(src.split('/')[3]) : null, value: r.value?.toString() };
  });
}
