import { SecretsManagerSource } from './adapters/aws/secretsManager.ts';
import type { KdrConfig } from './config.ts';
import { credentialsOnce } from './secrets.ts';

/**
 * The configuration a Lambda handler connects with: SASL credentials read from Secrets Manager on the
 * first invocation and kept for the container's life (a failed read is tried again next invocation).
 */
export function lambdaCredentials(config: KdrConfig): () => Promise<KdrConfig> {
  return credentialsOnce(config, () => SecretsManagerSource.fromConfig(config));
}
