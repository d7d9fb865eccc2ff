import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { KAFKA_VERSION } from './topology.ts';

/** The repository root (two levels above this file). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Where the lab keeps jars, the moto virtualenv, data and logs: `.lab/` (git-ignored) or KDR_LAB_DIR. */
/** Downloads (jars, moto's virtualenv) live in `<lab>/cache`, or KDR_LAB_CACHE_DIR to share them between labs. */
export function labPaths(labDir = process.env.KDR_LAB_DIR || path.join(REPO_ROOT, '.lab')) {
  const root = path.resolve(labDir);
  const cache = path.resolve(process.env.KDR_LAB_CACHE_DIR || path.join(root, 'cache'));
  return {
    root,
    state: path.join(root, 'state.json'),
    lock: path.join(root, 'lock'),
    cache,
    kafkaCache: path.join(cache, `kafka-${KAFKA_VERSION}`),
    venv: path.join(cache, 'venv'),
    data: path.join(root, 'data'),
    logs: path.join(root, 'logs'),
    config: path.join(root, 'config'),
    kafkaPom: path.join(REPO_ROOT, 'infra/local/kafka/pom.xml'),
    brokerLog4j: path.join(REPO_ROOT, 'infra/local/kafka/log4j2.properties'),
    toolsLog4j: path.join(REPO_ROOT, 'infra/local/kafka/tools-log4j2.properties'),
    motoRequirements: path.join(REPO_ROOT, 'infra/local/moto/requirements.txt'),
    stateResources: path.join(REPO_ROOT, 'infra/aws/state.yml'),
  };
}

export type LabPaths = ReturnType<typeof labPaths>;
