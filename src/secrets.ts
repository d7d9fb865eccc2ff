import {
  type ClusterConfig,
  type KdrConfig,
  PEM_CERTIFICATE,
  PEM_ENCRYPTED_KEY,
  PEM_PKCS8_KEY,
} from './config.ts';
import { ConfigError } from './errors.ts';
import type { SecretSource } from './ports/secrets.ts';

/**
 * Credentials kept in secrets are read once, before any Kafka client is built (kafkajs takes them as
 * plain options): SASL ({"username": ..., "password": ...}) and TLS material in the formats the Lambda
 * Kafka event source reads, so that kdr and the event source share one secret
 * (https://docs.aws.amazon.com/lambda/latest/dg/kafka-cluster-auth.html): a private CA
 * ({"certificate": "<PEM>"}, SERVER_ROOT_CA_CERTIFICATE) and a client certificate ({"certificate":
 * "<PEM chain, client first>", "privateKey": "<PKCS#8 PEM>", "privateKeyPassword": "..."},
 * CLIENT_CERTIFICATE_TLS_AUTH). Errors name the secret and the missing field, never a value.
 */

type ClusterName = 'PRIMARY' | 'STANDBY';

async function secretJson(source: SecretSource, arn: string, variable: string, expected: string) {
  const text = await source.getSecretString(arn);
  try {
    return (JSON.parse(text) ?? {}) as Record<string, unknown>;
  } catch {
    throw new ConfigError(`secret ${arn} (${variable}) is not JSON; expected ${expected}`);
  }
}

function field(fields: Record<string, unknown>, name: string, arn: string, variable: string, shape?: RegExp) {
  const value = fields[name];
  if (typeof value !== 'string' || value === '')
    throw new ConfigError(`secret ${arn} (${variable}) has no "${name}"`);
  if (shape && !shape.test(value))
    throw new ConfigError(`secret ${arn} (${variable}): "${name}" is not PEM (expected ${shape.source})`);
  return value;
}

async function resolveSasl(cluster: ClusterConfig, name: ClusterName, source: SecretSource) {
  const pending = cluster.saslSecret;
  if (!pending) return cluster;
  const variable = `KDR_${name}_SASL_SECRET_ARN`;
  const fields = await secretJson(
    source,
    pending.secretArn,
    variable,
    '{"username": "...", "password": "..."}',
  );
  const username = pending.username ?? field(fields, 'username', pending.secretArn, variable);
  const password = field(fields, 'password', pending.secretArn, variable);
  const { saslSecret: _resolved, ...rest } = cluster;
  return { ...rest, sasl: { mechanism: pending.mechanism, username, password } };
}

async function resolveTls(cluster: ClusterConfig, name: ClusterName, source: SecretSource) {
  const pending = cluster.tlsSecrets;
  if (!pending) return cluster;
  const tls = { ...cluster.tls };
  if (pending.caSecretArn) {
    const variable = `KDR_${name}_TLS_CA_SECRET_ARN`;
    const fields = await secretJson(source, pending.caSecretArn, variable, '{"certificate": "<PEM>"}');
    tls.ca = field(fields, 'certificate', pending.caSecretArn, variable, PEM_CERTIFICATE);
  }
  if (pending.clientSecretArn) {
    const arn = pending.clientSecretArn;
    const variable = `KDR_${name}_TLS_CLIENT_SECRET_ARN`;
    const fields = await secretJson(source, arn, variable, '{"certificate": "<PEM>", "privateKey": "<PEM>"}');
    tls.cert = field(fields, 'certificate', arn, variable, PEM_CERTIFICATE);
    // PKCS#8 only: the event source reads this secret too, and takes no other key format.
    tls.key = field(fields, 'privateKey', arn, variable, PEM_PKCS8_KEY);
    if (typeof fields.privateKeyPassword === 'string' && fields.privateKeyPassword !== '')
      tls.passphrase = fields.privateKeyPassword;
    else if (PEM_ENCRYPTED_KEY.test(tls.key))
      throw new ConfigError(
        `secret ${arn} (${variable}): "privateKey" is encrypted but there is no "privateKeyPassword"`,
      );
  }
  const { tlsSecrets: _resolved, ...rest } = cluster;
  return { ...rest, tls };
}

export async function resolveCredentials(config: KdrConfig, source: SecretSource): Promise<KdrConfig> {
  const resolve = async (cluster: ClusterConfig, name: ClusterName) =>
    resolveTls(await resolveSasl(cluster, name, source), name, source);
  return {
    ...config,
    primary: await resolve(config.primary, 'PRIMARY'),
    standby: await resolve(config.standby, 'STANDBY'),
  };
}

const pendingSecrets = (cluster: ClusterConfig) => Boolean(cluster.saslSecret || cluster.tlsSecrets);

/** Resolves once and keeps the result (a Lambda container, a CLI process); a failure is retried next call. */
export function credentialsOnce(config: KdrConfig, source: () => SecretSource): () => Promise<KdrConfig> {
  let pending: Promise<KdrConfig> | undefined;
  return () => {
    if (!pendingSecrets(config.primary) && !pendingSecrets(config.standby)) return Promise.resolve(config);
    pending ??= resolveCredentials(config, source()).catch((error) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}
