import type { ClusterConfig, KdrConfig } from './config.ts';
import { ConfigError } from './errors.ts';
import type { SecretSource } from './ports/secrets.ts';

/**
 * SASL credentials kept in a secret ({"username": ..., "password": ...}) are read once, before any Kafka
 * client is built (kafkajs takes them as plain options). Errors name the secret and the missing field,
 * never a value.
 */
export async function resolveCredentials(config: KdrConfig, source: SecretSource): Promise<KdrConfig> {
  const resolve = async (cluster: ClusterConfig, name: 'PRIMARY' | 'STANDBY'): Promise<ClusterConfig> => {
    const pending = cluster.saslSecret;
    if (!pending) return cluster;
    const text = await source.getSecretString(pending.secretArn);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ConfigError(
        `secret ${pending.secretArn} (KDR_${name}_SASL_SECRET_ARN) is not JSON; expected {"username": "...", "password": "..."}`,
      );
    }
    const fields = (parsed ?? {}) as { username?: unknown; password?: unknown };
    const username = pending.username ?? fields.username;
    if (typeof username !== 'string' || username === '')
      throw new ConfigError(`secret ${pending.secretArn} (KDR_${name}_SASL_SECRET_ARN) has no "username"`);
    if (typeof fields.password !== 'string' || fields.password === '')
      throw new ConfigError(`secret ${pending.secretArn} (KDR_${name}_SASL_SECRET_ARN) has no "password"`);
    const { saslSecret: _resolved, ...rest } = cluster;
    return { ...rest, sasl: { mechanism: pending.mechanism, username, password: fields.password } };
  };
  return {
    ...config,
    primary: await resolve(config.primary, 'PRIMARY'),
    standby: await resolve(config.standby, 'STANDBY'),
  };
}

/** Resolves once and keeps the result (a Lambda container, a CLI process); a failure is retried next call. */
export function credentialsOnce(config: KdrConfig, source: () => SecretSource): () => Promise<KdrConfig> {
  let pending: Promise<KdrConfig> | undefined;
  return () => {
    if (!config.primary.saslSecret && !config.standby.saslSecret) return Promise.resolve(config);
    pending ??= resolveCredentials(config, source()).catch((error) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}
