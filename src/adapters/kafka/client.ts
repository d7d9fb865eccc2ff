import kafkajs, { type Kafka, type KafkaConfig, type SASLOptions } from 'kafkajs';
import type { ClusterConfig } from '../../config.ts';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import { registerCodecs } from './codecs.ts';

const { Kafka: KafkaClient, logLevel } = kafkajs;

/**
 * Node's TLS options: a private CA replaces Node's public CAs (as a Java truststore would), a client
 * certificate answers a broker that requires one. kafkajs verifies the broker's name (SNI for hosts,
 * the IP SAN for addresses).
 */
function tlsOptions(cluster: ClusterConfig): KafkaConfig['ssl'] {
  if (!cluster.ssl) return false;
  const tls = cluster.tls;
  if (!tls) return true;
  return {
    ...(tls.ca ? { ca: [tls.ca] } : {}),
    ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
    ...(tls.passphrase ? { passphrase: tls.passphrase } : {}),
  };
}

/** A kafkajs client for one cluster (TLS and SASL as configured), with every compression codec registered. */
export function createKafka(cluster: ClusterConfig, clientId: string, logger?: Logger): Kafka {
  if (cluster.saslSecret)
    throw new ConfigError(
      `the SASL credentials of the ${cluster.alias} cluster are in secret ${cluster.saslSecret.secretArn} and were not read yet (resolveCredentials)`,
    );
  if (cluster.tlsSecrets)
    throw new ConfigError(
      `the TLS material of the ${cluster.alias} cluster is in Secrets Manager and was not read yet (resolveCredentials)`,
    );
  registerCodecs();
  const config: KafkaConfig = {
    clientId,
    brokers: cluster.brokers,
    ssl: tlsOptions(cluster),
    connectionTimeout: 5000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 100, maxRetryTime: 5000, retries: 8 },
    // kafkajs logs every retried request as an error; kdr reports failures itself, so its logs go to debug.
    logLevel: logger ? logLevel.WARN : logLevel.NOTHING,
    ...(logger
      ? {
          logCreator:
            () =>
            ({ namespace, log }) => {
              const { message, ...rest } = log;
              logger.debug(`kafkajs ${namespace}: ${message}`, { cluster: cluster.alias, ...rest });
            },
        }
      : {}),
  };
  if (cluster.sasl) {
    config.sasl = {
      mechanism: cluster.sasl.mechanism,
      username: cluster.sasl.username,
      password: cluster.sasl.password,
    } as SASLOptions;
  }
  return new KafkaClient(config);
}
