import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SEGMENT_COMPRESSIONS, type SegmentCompression } from './core/segment.ts';
import { ConfigError } from './errors.ts';

/**
 * All configuration comes from environment variables, parsed once at start by one zod schema. With
 * nothing set, every value targets the local lab (`kdr lab up`).
 */

export const LAB_DEFAULTS = {
  host: '127.0.0.1',
  primaryPort: 19092,
  standbyPort: 29092,
  motoPort: 4566,
  /** The lab's Lambda API (`kdr lab up --lambda`). */
  lambdaApiPort: 4580,
  region: 'us-east-1',
  bucket: 'kdr-local',
  offsetTable: 'kdr-local-offsets',
  stateTable: 'kdr-local-state',
} as const;

/**
 * The lab's endpoints. KDR_LAB_PORT_OFFSET shifts every lab port (a second lab beside the first, as the
 * three-broker tests use), and the defaults below follow it, so that kdr still targets that lab.
 */
export function labEndpoints(portOffset = 0) {
  const { host } = LAB_DEFAULTS;
  return {
    primaryBrokers: `${host}:${LAB_DEFAULTS.primaryPort + portOffset}`,
    standbyBrokers: `${host}:${LAB_DEFAULTS.standbyPort + portOffset}`,
    awsEndpoint: `http://${host}:${LAB_DEFAULTS.motoPort + portOffset}`,
  };
}

export const COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
export const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

export interface SaslConfig {
  mechanism: SaslMechanism;
  username: string;
  password: string;
}

/** What kdr's clients use for TLS beyond the system's public CAs: a private CA, a client certificate. */
export interface TlsMaterial {
  /** PEM certificates trusted instead of Node's public CAs. */
  ca?: string;
  /** Client certificate chain (PEM, the client's first) and its private key, for mTLS. */
  cert?: string;
  key?: string;
  passphrase?: string;
}

export interface ClusterConfig {
  alias: string;
  brokers: string[];
  ssl: boolean;
  tls?: TlsMaterial;
  /**
   * TLS material kept in Secrets Manager in the formats the Lambda Kafka event source reads (its
   * SERVER_ROOT_CA_CERTIFICATE and CLIENT_CERTIFICATE_TLS_AUTH secrets), read by resolveCredentials.
   */
  tlsSecrets?: { caSecretArn?: string; clientSecretArn?: string };
  sasl?: SaslConfig;
  /**
   * Where the SASL credentials are when they are not in the environment: a Secrets Manager secret
   * ({"username": ..., "password": ...}), read once per process by resolveCredentials (src/secrets.ts).
   */
  saslSecret?: { mechanism: SaslMechanism; secretArn: string; username?: string };
}

export interface KdrConfig {
  pair: string;
  primary: ClusterConfig;
  standby: ClusterConfig;
  /** Source of the topic selection regex, anchored when used. */
  topics: string;
  groups: string;
  aws: {
    region: string;
    endpoint?: string;
    credentials?: { accessKeyId: string; secretAccessKey: string };
  };
  bucket: string;
  offsetTable: string;
  stateTable: string;
  standbyCompression: Compression;
  mirror: {
    /** Most records one Kafka transaction carries; bigger batches are split. */
    maxTransactionRecords: number;
    /** Most bytes (keys + values + headers) one produce request carries. */
    maxRequestBytes: number;
    /** How many partitions one process mirrors at the same time. */
    partitionConcurrency: number;
    /** Lambda: re-read each batch's range from the source (read_committed) instead of trusting the event. */
    lambdaRefetch: boolean;
    /** Consumer group of `kdr mirror` processes on the source. */
    groupId: string;
    /** How often a running mirror looks for new topics, more partitions and config changes. */
    topicSyncIntervalMs: number;
  };
  snapshot: {
    /** Key prefix of manifests, segments and progress in the bucket. */
    prefix: string;
    /** Uncompressed bytes per segment object. */
    segmentBytes: number;
    /** How new segments are compressed. */
    compression: SegmentCompression;
    /** How often `kdr run` takes a snapshot (0: never). */
    intervalMs: number;
    leaseMs: number;
  };
  /** How long a failover or failback whose process died blocks the next run (its lease). */
  operationLeaseMs: number;
  checkpoint: {
    /** Also commit translated offsets on the standby for groups that are empty there. */
    commitOnStandby: boolean;
    /** How often `kdr run` checkpoints. */
    intervalMs: number;
  };
  /** Port of `kdr run`'s Prometheus endpoint (/metrics); 0: none. */
  metricsPort: number;
  /** The mirror Lambda function whose event sources failover disables (unset outside AWS). */
  mirrorFunctionName?: string;
  /**
   * Brokers outside the pair that the restore function may write to (KDR_RESTORE_ALLOWED_BROKERS): in
   * Lambda a restore targets only the pair's clusters unless every broker of its target is listed.
   */
  restoreAllowedBrokers: string[];
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** The lab's endpoints under the configured port offset (what the defaults point at). */
  lab: ReturnType<typeof labEndpoints> & { portOffset: number };
  /** True inside AWS Lambda: no lab defaults apply there. */
  inLambda: boolean;
}

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

const brokerList = z.string().transform((raw, ctx) => {
  const brokers = raw
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
  const bad = brokers.filter((b) => {
    const match = HOST_PORT.exec(b);
    return !match || Number(match[1]) < 1 || Number(match[1]) > 65535;
  });
  if (brokers.length === 0 || bad.length > 0) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a comma-separated list of host:port (port 1-65535), got ${JSON.stringify(raw)}`,
    });
    return z.NEVER;
  }
  return brokers;
});

const regexSource = z.string().superRefine((raw, ctx) => {
  try {
    new RegExp(raw);
  } catch (error) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a JavaScript regular expression, got ${JSON.stringify(raw)} (${(error as Error).message})`,
    });
  }
});

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], {
    error: (issue) => `expected true or false, got ${JSON.stringify(issue.input)}`,
  })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: (issue) => `expected a whole number, got ${JSON.stringify(issue.input)}` })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(1, { error: (issue) => `expected at least 1, got ${issue.input}` })
        .max(max, { error: (issue) => `expected at most ${max}, got ${issue.input}` }),
    );

const name = (what: string) =>
  z.string().regex(NAME, {
    error: (issue) =>
      `expected a ${what} of 1-64 letters, digits, '.', '_' or '-', got ${JSON.stringify(issue.input)}`,
  });

const enumOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z
    .string()
    .transform((v) => v.toLowerCase())
    .pipe(
      z.enum(values, {
        error: (issue) => `expected one of ${values.join(', ')}, got ${JSON.stringify(issue.input)}`,
      }),
    );

const url = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  },
  { error: (issue) => `expected an http(s) URL, got ${JSON.stringify(issue.input)}` },
);

const secretArn = z.string().regex(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/, {
  error: (issue) => `expected a Secrets Manager secret ARN, got ${JSON.stringify(issue.input)}`,
});

const clusterVars = (prefix: 'PRIMARY' | 'STANDBY') => ({
  [`KDR_${prefix}_ALIAS`]: name('cluster alias').optional(),
  [`KDR_${prefix}_BROKERS`]: brokerList.optional(),
  [`KDR_${prefix}_TLS`]: bool.optional(),
  [`KDR_${prefix}_TLS_CA_FILE`]: z.string().min(1).optional(),
  [`KDR_${prefix}_TLS_CA_SECRET_ARN`]: secretArn.optional(),
  [`KDR_${prefix}_TLS_CERT_FILE`]: z.string().min(1).optional(),
  [`KDR_${prefix}_TLS_KEY_FILE`]: z.string().min(1).optional(),
  [`KDR_${prefix}_TLS_KEY_PASSWORD`]: z.string().min(1).optional(),
  [`KDR_${prefix}_TLS_CLIENT_SECRET_ARN`]: secretArn.optional(),
  [`KDR_${prefix}_SASL_MECHANISM`]: enumOf(SASL_MECHANISMS).optional(),
  [`KDR_${prefix}_SASL_USERNAME`]: z.string().min(1).optional(),
  [`KDR_${prefix}_SASL_PASSWORD`]: z.string().min(1).optional(),
  [`KDR_${prefix}_SASL_PASSWORD_FILE`]: z.string().min(1).optional(),
  [`KDR_${prefix}_SASL_SECRET_ARN`]: secretArn.optional(),
});

const envSchema = z.object({
  KDR_PAIR: name('pair name').default('primary-standby'),
  ...clusterVars('PRIMARY'),
  ...clusterVars('STANDBY'),
  KDR_TOPICS: regexSource.default('.*'),
  KDR_GROUPS: regexSource.default('.*'),
  AWS_ENDPOINT_URL: url.optional(),
  AWS_REGION: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, {
      error: (issue) => `expected an AWS region such as us-east-1, got ${JSON.stringify(issue.input)}`,
    })
    .optional(),
  AWS_DEFAULT_REGION: z.string().optional(),
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_SECRET_ACCESS_KEY: z.string().optional(),
  AWS_LAMBDA_FUNCTION_NAME: z.string().optional(),
  KDR_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, {
      error: (issue) =>
        `expected an S3 bucket name (3-63 lowercase letters, digits, '.', '-'), got ${JSON.stringify(issue.input)}`,
    })
    .optional(),
  KDR_OFFSET_TABLE: z
    .string()
    .regex(/^[A-Za-z0-9._-]{3,255}$/, {
      error: (issue) =>
        `expected a DynamoDB table name (3-255 of A-Z a-z 0-9 . _ -), got ${JSON.stringify(issue.input)}`,
    })
    .optional(),
  KDR_STATE_TABLE: z
    .string()
    .regex(/^[A-Za-z0-9._-]{3,255}$/, {
      error: (issue) =>
        `expected a DynamoDB table name (3-255 of A-Z a-z 0-9 . _ -), got ${JSON.stringify(issue.input)}`,
    })
    .optional(),
  KDR_STANDBY_COMPRESSION: enumOf(COMPRESSIONS).default('none'),
  KDR_MIRROR_MAX_TRANSACTION_RECORDS: positiveInt(100_000).default(10_000),
  KDR_MIRROR_MAX_REQUEST_BYTES: positiveInt(64 * 1024 * 1024).default(900_000),
  KDR_MIRROR_PARTITION_CONCURRENCY: positiveInt(256).default(8),
  KDR_MIRROR_LAMBDA_REFETCH: bool.default(true),
  KDR_TOPIC_SYNC_INTERVAL_MS: positiveInt(24 * 3600 * 1000).default(30_000),
  KDR_CHECKPOINT_COMMIT_ON_STANDBY: bool.default(false),
  // zstd's WASM heap (2 GiB at most) holds a segment and its compressed bound while compressing.
  KDR_SNAPSHOT_SEGMENT_BYTES: positiveInt(512 * 1024 * 1024).default(32 * 1024 * 1024),
  KDR_SNAPSHOT_COMPRESSION: enumOf(SEGMENT_COMPRESSIONS).default('zstd'),
  KDR_SNAPSHOT_INTERVAL_MS: z
    .string()
    .regex(/^\d+$/, {
      error: (issue) =>
        `expected a whole number of milliseconds (0: never), got ${JSON.stringify(issue.input)}`,
    })
    .transform(Number)
    .default(15 * 60_000),
  KDR_SNAPSHOT_LEASE_MS: positiveInt(24 * 3600 * 1000).default(60_000),
  KDR_OPERATION_LEASE_MS: positiveInt(3600 * 1000).default(30_000),
  KDR_SNAPSHOT_PREFIX: z
    .string()
    .regex(/^[a-z0-9][a-z0-9/_.-]{0,200}[a-z0-9]$/, {
      error: (issue) =>
        `expected a key prefix of lowercase letters, digits, '/', '_', '.', '-', got ${JSON.stringify(issue.input)}`,
    })
    .default('snapshots'),
  KDR_CHECKPOINT_INTERVAL_MS: positiveInt(24 * 3600 * 1000).default(60_000),
  KDR_METRICS_PORT: z
    .string()
    .regex(/^\d{1,5}$/, {
      error: (issue) => `expected a port number (0: none), got ${JSON.stringify(issue.input)}`,
    })
    .transform(Number)
    .pipe(z.number().max(65535, { error: (issue) => `expected a port up to 65535, got ${issue.input}` }))
    .optional(),
  KDR_MIRROR_FUNCTION_NAME: z.string().min(1).optional(),
  KDR_RESTORE_ALLOWED_BROKERS: brokerList.optional(),
  KDR_MIRROR_GROUP_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,200}$/, {
      error: (issue) =>
        `expected a consumer group id (letters, digits, . _ -), got ${JSON.stringify(issue.input)}`,
    })
    .optional(),
  KDR_LOG_LEVEL: enumOf(['debug', 'info', 'warn', 'error'] as const).default('info'),
  KDR_LAB_PORT_OFFSET: z
    .string()
    .regex(/^\d+$/, { error: (issue) => `expected a whole number, got ${JSON.stringify(issue.input)}` })
    .transform(Number)
    // The lab's highest port is 29194 + offset; Linux hands out 32768-60999 to client sockets, and one
    // of those holding a lab port would make `lab up` refuse to start.
    .pipe(
      z.number().max(3500, {
        error: (issue) =>
          `expected at most 3500 (lab ports stay below the ephemeral range 32768-60999), got ${issue.input}`,
      }),
    )
    .default(0),
});

type Env = z.infer<typeof envSchema>;
// Values never echoed in errors (a secret ARN or a password file path is not a secret).
const SECRET_VARS = /(PASSWORD|SECRET)(?!_ARN|_FILE)/;

function clusterConfig(
  env: Env,
  prefix: 'PRIMARY' | 'STANDBY',
  defaults: { alias: string; brokers: string },
) {
  const get = (suffix: string) => (env as Record<string, unknown>)[`KDR_${prefix}_${suffix}`];
  const mechanism = get('SASL_MECHANISM') as SaslMechanism | undefined;
  const username = get('SASL_USERNAME') as string | undefined;
  const secretArn = get('SASL_SECRET_ARN') as string | undefined;
  const passwordFile = get('SASL_PASSWORD_FILE') as string | undefined;
  let password = get('SASL_PASSWORD') as string | undefined;
  const sources = [password, passwordFile, secretArn].filter((v) => v !== undefined).length;
  if (sources > 1) {
    throw new ConfigError(
      `set one of KDR_${prefix}_SASL_PASSWORD, KDR_${prefix}_SASL_PASSWORD_FILE and KDR_${prefix}_SASL_SECRET_ARN, not several`,
    );
  }
  if (!mechanism && sources + (username ? 1 : 0) > 0) {
    throw new ConfigError(
      `KDR_${prefix}_SASL_MECHANISM must be set (plain, scram-sha-256 or scram-sha-512) when SASL credentials are given`,
    );
  }
  if (passwordFile !== undefined) {
    try {
      password = readFileSync(passwordFile, 'utf8').trim();
    } catch (error) {
      throw new ConfigError(
        `KDR_${prefix}_SASL_PASSWORD_FILE: cannot read ${passwordFile} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    if (!password) throw new ConfigError(`KDR_${prefix}_SASL_PASSWORD_FILE: ${passwordFile} is empty`);
  }
  if (mechanism && !secretArn && (!username || !password)) {
    throw new ConfigError(
      `KDR_${prefix}_SASL_MECHANISM is ${mechanism}, so KDR_${prefix}_SASL_USERNAME and KDR_${prefix}_SASL_PASSWORD (or _PASSWORD_FILE), or KDR_${prefix}_SASL_SECRET_ARN, must be set too`,
    );
  }
  const cluster: ClusterConfig = {
    alias: (get('ALIAS') as string | undefined) ?? defaults.alias,
    brokers: (get('BROKERS') as string[] | undefined) ?? defaults.brokers.split(','),
    ...tlsConfig(get, prefix),
  };
  if (mechanism && secretArn)
    cluster.saslSecret = { mechanism, secretArn, ...(username ? { username } : {}) };
  else if (mechanism && username && password) cluster.sasl = { mechanism, username, password };
  return cluster;
}

/** A PEM file's text, or a ConfigError naming the variable, the file and what it lacks. */
function readPem(variable: string, file: string, kind: 'certificate' | 'private key'): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `${variable}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const [expected, marker] =
    kind === 'certificate'
      ? [PEM_CERTIFICATE, '-----BEGIN CERTIFICATE-----']
      : [PEM_PRIVATE_KEY, '-----BEGIN PRIVATE KEY-----'];
  if (!expected.test(text)) throw new ConfigError(`${variable}: ${file} holds no PEM ${kind} (${marker})`);
  return text;
}

export const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----/;
export const PEM_PRIVATE_KEY = /-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----/;
/** PKCS#8, plain or encrypted: the only key format the Lambda event source reads. */
export const PEM_PKCS8_KEY = /-----BEGIN (?:ENCRYPTED )?PRIVATE KEY-----/;
export const PEM_ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----/;

/**
 * TLS of one cluster: on with KDR_<C>_TLS=true or with any CA or client certificate given (a private CA
 * or a certificate means TLS; KDR_<C>_TLS=false beside one is refused). Files are read here, once;
 * secrets later, by resolveCredentials.
 */
function tlsConfig(
  get: (suffix: string) => unknown,
  prefix: 'PRIMARY' | 'STANDBY',
): Pick<ClusterConfig, 'ssl' | 'tls' | 'tlsSecrets'> {
  const v = (suffix: string) => `KDR_${prefix}_${suffix}`;
  const value = (suffix: string) => get(suffix) as string | undefined;
  const given = [
    'TLS_CA_FILE',
    'TLS_CA_SECRET_ARN',
    'TLS_CERT_FILE',
    'TLS_KEY_FILE',
    'TLS_CLIENT_SECRET_ARN',
  ].filter((suffix) => value(suffix) !== undefined);
  const enabled = get('TLS') as boolean | undefined;
  if (value('TLS_KEY_PASSWORD') !== undefined && value('TLS_KEY_FILE') === undefined)
    throw new ConfigError(
      `${v('TLS_KEY_PASSWORD')} is set but ${v('TLS_KEY_FILE')} is not (a key in ${v('TLS_CLIENT_SECRET_ARN')} takes its password from the secret's "privateKeyPassword")`,
    );
  if (given.length === 0) return { ssl: enabled ?? false };
  if (enabled === false)
    throw new ConfigError(
      `${v('TLS')} is false, but ${given.map(v).join(' and ')} need TLS: set it to true or unset them`,
    );
  const both = (a: string, b: string) => {
    if (value(a) !== undefined && value(b) !== undefined)
      throw new ConfigError(`set one of ${v(a)} and ${v(b)}, not both`);
  };
  both('TLS_CA_FILE', 'TLS_CA_SECRET_ARN');
  both('TLS_CERT_FILE', 'TLS_CLIENT_SECRET_ARN');
  both('TLS_KEY_FILE', 'TLS_CLIENT_SECRET_ARN');
  if ((value('TLS_CERT_FILE') === undefined) !== (value('TLS_KEY_FILE') === undefined))
    throw new ConfigError(
      `${v('TLS_CERT_FILE')} and ${v('TLS_KEY_FILE')} go together: a client certificate needs its key`,
    );
  const tls: TlsMaterial = {};
  const caFile = value('TLS_CA_FILE');
  if (caFile) tls.ca = readPem(v('TLS_CA_FILE'), caFile, 'certificate');
  const certFile = value('TLS_CERT_FILE');
  const keyFile = value('TLS_KEY_FILE');
  if (certFile && keyFile) {
    tls.cert = readPem(v('TLS_CERT_FILE'), certFile, 'certificate');
    tls.key = readPem(v('TLS_KEY_FILE'), keyFile, 'private key');
    const passphrase = value('TLS_KEY_PASSWORD');
    if (passphrase) tls.passphrase = passphrase;
    else if (PEM_ENCRYPTED_KEY.test(tls.key))
      throw new ConfigError(`${v('TLS_KEY_FILE')}: ${keyFile} is encrypted: set ${v('TLS_KEY_PASSWORD')}`);
  }
  const tlsSecrets: NonNullable<ClusterConfig['tlsSecrets']> = {};
  if (value('TLS_CA_SECRET_ARN')) tlsSecrets.caSecretArn = value('TLS_CA_SECRET_ARN')!;
  if (value('TLS_CLIENT_SECRET_ARN')) tlsSecrets.clientSecretArn = value('TLS_CLIENT_SECRET_ARN')!;
  return {
    ssl: true,
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
    ...(Object.keys(tlsSecrets).length > 0 ? { tlsSecrets } : {}),
  };
}

/** Parses the environment once; throws a ConfigError naming every bad variable and what was expected. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): KdrConfig {
  const present = Object.fromEntries(
    Object.entries(env).filter(
      ([key, value]) => value !== undefined && value !== '' && key in envSchema.shape,
    ),
  );
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const variable = String(issue.path[0] ?? '(environment)');
      const message = SECRET_VARS.test(variable) ? 'is invalid' : issue.message;
      return `${variable}: ${message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`, {
      details: { variables: parsed.error.issues.map((i) => String(i.path[0])) },
    });
  }
  const e = parsed.data;
  const inLambda = e.AWS_LAMBDA_FUNCTION_NAME !== undefined;
  const lab = labEndpoints(e.KDR_LAB_PORT_OFFSET);
  const primary = clusterConfig(e, 'PRIMARY', { alias: 'primary', brokers: lab.primaryBrokers });
  const standby = clusterConfig(e, 'STANDBY', { alias: 'standby', brokers: lab.standbyBrokers });
  if (primary.alias === standby.alias) {
    throw new ConfigError(
      `KDR_PRIMARY_ALIAS and KDR_STANDBY_ALIAS must differ, both are ${JSON.stringify(primary.alias)}`,
    );
  }
  const endpoint = e.AWS_ENDPOINT_URL ?? (inLambda ? undefined : lab.awsEndpoint);
  const aws: KdrConfig['aws'] = {
    region: e.AWS_REGION ?? e.AWS_DEFAULT_REGION ?? LAB_DEFAULTS.region,
  };
  if (endpoint) aws.endpoint = endpoint;
  // moto accepts any credentials; only the lab gets placeholder ones, never a real AWS endpoint.
  if (endpoint === lab.awsEndpoint && !e.AWS_ACCESS_KEY_ID) {
    aws.credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
  }
  return {
    pair: e.KDR_PAIR,
    primary,
    standby,
    topics: e.KDR_TOPICS,
    groups: e.KDR_GROUPS,
    aws,
    bucket: e.KDR_BUCKET ?? LAB_DEFAULTS.bucket,
    offsetTable: e.KDR_OFFSET_TABLE ?? LAB_DEFAULTS.offsetTable,
    stateTable: e.KDR_STATE_TABLE ?? LAB_DEFAULTS.stateTable,
    standbyCompression: e.KDR_STANDBY_COMPRESSION,
    mirror: {
      maxTransactionRecords: e.KDR_MIRROR_MAX_TRANSACTION_RECORDS,
      maxRequestBytes: e.KDR_MIRROR_MAX_REQUEST_BYTES,
      partitionConcurrency: e.KDR_MIRROR_PARTITION_CONCURRENCY,
      lambdaRefetch: e.KDR_MIRROR_LAMBDA_REFETCH,
      groupId: e.KDR_MIRROR_GROUP_ID ?? `kdr-mirror-${e.KDR_PAIR}`,
      topicSyncIntervalMs: e.KDR_TOPIC_SYNC_INTERVAL_MS,
    },
    snapshot: {
      prefix: e.KDR_SNAPSHOT_PREFIX,
      segmentBytes: e.KDR_SNAPSHOT_SEGMENT_BYTES,
      compression: e.KDR_SNAPSHOT_COMPRESSION,
      intervalMs: e.KDR_SNAPSHOT_INTERVAL_MS,
      leaseMs: e.KDR_SNAPSHOT_LEASE_MS,
    },
    operationLeaseMs: e.KDR_OPERATION_LEASE_MS,
    checkpoint: {
      commitOnStandby: e.KDR_CHECKPOINT_COMMIT_ON_STANDBY,
      intervalMs: e.KDR_CHECKPOINT_INTERVAL_MS,
    },
    // Prometheus' usual exporter port, shifted with the lab's ports so that two labs do not collide.
    metricsPort: e.KDR_METRICS_PORT ?? 9464 + e.KDR_LAB_PORT_OFFSET,
    ...(e.KDR_MIRROR_FUNCTION_NAME ? { mirrorFunctionName: e.KDR_MIRROR_FUNCTION_NAME } : {}),
    restoreAllowedBrokers: e.KDR_RESTORE_ALLOWED_BROKERS ?? [],
    logLevel: e.KDR_LOG_LEVEL,
    lab: { ...lab, portOffset: e.KDR_LAB_PORT_OFFSET },
    inLambda,
  };
}

/** The configuration with secrets replaced, for `kdr config` and logs. */
export function redactConfig(config: KdrConfig): unknown {
  return JSON.parse(
    JSON.stringify(config, (key, value) =>
      key === 'password' || key === 'secretAccessKey' || key === 'key' || key === 'passphrase'
        ? value
          ? '***'
          : value
        : (key === 'ca' || key === 'cert') && typeof value === 'string'
          ? `${value.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0} PEM certificate(s)`
          : value,
    ),
  );
}
