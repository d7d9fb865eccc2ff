import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { LabError, PrerequisiteError } from '../../src/errors.ts';
import type { LabPaths } from './paths.ts';
import { KAFKA_VERSION } from './topology.ts';

/**
 * What the lab needs on the machine and how it gets the rest: Kafka's jars from Maven Central (or an
 * existing install in KAFKA_HOME), and moto in a private virtualenv from PyPI. Both are fetched once.
 */

const INSTALL_HINTS: Record<string, string> = {
  java: 'a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)',
  mvn: 'Apache Maven, to fetch the Kafka jars once (Debian: apt-get install maven), or set KAFKA_HOME to an existing Kafka 4.x install',
  python3: 'Python 3 with venv, for moto (Debian: apt-get install python3 python3-venv)',
};

async function hasCommand(command: string): Promise<boolean> {
  const result = await execa(command, ['--version'], { reject: false, timeout: 30_000 });
  return result.exitCode === 0;
}

function digest(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export interface KafkaDistribution {
  /** Directory holding every jar of the broker, the tools and MirrorMaker 2. */
  libs: string;
  source: 'KAFKA_HOME' | 'maven';
}

function kafkaHomeDistribution(): KafkaDistribution | undefined {
  const home = process.env.KAFKA_HOME;
  if (!home) return undefined;
  const libs = path.join(home, 'libs');
  const hasBroker = existsSync(libs) && readdirSync(libs).some((f) => /^kafka_2\.13-.*\.jar$/.test(f));
  if (!hasBroker) {
    throw new PrerequisiteError(
      `KAFKA_HOME=${home} is set but ${libs} holds no kafka_2.13-*.jar; point KAFKA_HOME at an unpacked Kafka 4.x distribution or unset it`,
    );
  }
  return { libs, source: 'KAFKA_HOME' };
}

function cachedDistribution(paths: LabPaths): KafkaDistribution | undefined {
  const marker = path.join(paths.kafkaCache, '.complete');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === digest(paths.kafkaPom)) {
    return { libs: path.join(paths.kafkaCache, 'libs'), source: 'maven' };
  }
  return undefined;
}

function venvReady(paths: LabPaths): boolean {
  const marker = path.join(paths.venv, '.complete');
  return existsSync(marker) && readFileSync(marker, 'utf8') === digest(paths.motoRequirements);
}

/** One clear message naming everything missing, before anything is started or downloaded. */
export async function checkPrerequisites(paths: LabPaths): Promise<void> {
  const needed = ['java'];
  if (!kafkaHomeDistribution() && !cachedDistribution(paths)) needed.push('mvn');
  if (!venvReady(paths)) needed.push('python3');
  const missing: string[] = [];
  for (const command of needed) if (!(await hasCommand(command))) missing.push(command);
  if (missing.length > 0) {
    throw new PrerequisiteError(
      `the lab needs ${missing.join(', ')} on PATH; install:\n${missing.map((m) => `  - ${m}: ${INSTALL_HINTS[m]}`).join('\n')}`,
      { details: { missing } },
    );
  }
}

export async function ensureKafka(paths: LabPaths, log: (line: string) => void): Promise<KafkaDistribution> {
  const existing = kafkaHomeDistribution() ?? cachedDistribution(paths);
  if (existing) return existing;
  log(`fetching Apache Kafka ${KAFKA_VERSION} jars from Maven Central (once) into ${paths.kafkaCache}`);
  const staging = `${paths.kafkaCache}.partial`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const result = await execa(
    'mvn',
    [
      '-B',
      '-q',
      '-f',
      paths.kafkaPom,
      'dependency:copy-dependencies',
      `-DoutputDirectory=${path.join(staging, 'libs')}`,
    ],
    { reject: false, all: true, timeout: 15 * 60_000 },
  );
  if (result.exitCode !== 0) {
    throw new LabError(
      'LAB_START_FAILED',
      `Maven could not fetch the Kafka ${KAFKA_VERSION} jars:\n${result.all}`,
    );
  }
  writeFileSync(path.join(staging, '.complete'), digest(paths.kafkaPom));
  rmSync(paths.kafkaCache, { recursive: true, force: true });
  renameSync(staging, paths.kafkaCache);
  return { libs: path.join(paths.kafkaCache, 'libs'), source: 'maven' };
}

export async function ensureMoto(paths: LabPaths, log: (line: string) => void): Promise<string> {
  const server = path.join(paths.venv, 'bin', 'moto_server');
  if (venvReady(paths)) return server;
  log(`installing moto server (pinned) into ${paths.venv}`);
  rmSync(paths.venv, { recursive: true, force: true });
  const steps: [string, string[]][] = [
    ['python3', ['-m', 'venv', paths.venv]],
    [path.join(paths.venv, 'bin', 'pip'), ['install', '--quiet', '-r', paths.motoRequirements]],
  ];
  for (const [command, args] of steps) {
    const result = await execa(command, args, { reject: false, all: true, timeout: 15 * 60_000 });
    if (result.exitCode !== 0) {
      throw new LabError(
        'LAB_START_FAILED',
        `installing moto failed at \`${command} ${args.join(' ')}\`:\n${result.all}`,
      );
    }
  }
  writeFileSync(path.join(paths.venv, '.complete'), digest(paths.motoRequirements));
  return server;
}
