import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { KdrConfig } from '../../config.ts';
import { ConfigError, StoreError } from '../../errors.ts';
import type { SecretSource } from '../../ports/secrets.ts';
import { recordAwsCalls } from './callLog.ts';

/** Secrets Manager (moto in the lab): the SASL credentials of the clusters. */
export class SecretsManagerSource implements SecretSource {
  constructor(private readonly client: SecretsManagerClient) {}

  static fromConfig(config: Pick<KdrConfig, 'aws'>): SecretsManagerSource {
    return new SecretsManagerSource(
      recordAwsCalls(
        new SecretsManagerClient({
          region: config.aws.region,
          ...(config.aws.endpoint ? { endpoint: config.aws.endpoint } : {}),
          ...(config.aws.credentials ? { credentials: config.aws.credentials } : {}),
          maxAttempts: 5,
        }),
      ),
    );
  }

  async getSecretString(secretArn: string): Promise<string> {
    try {
      const result = await this.client.send(new GetSecretValueCommand({ SecretId: secretArn }));
      if (result.SecretString === undefined)
        throw new ConfigError(`secret ${secretArn} holds binary data; kdr expects a JSON string`);
      return result.SecretString;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      const name = (error as Error).name;
      // Missing or forbidden: a configuration problem, not worth retrying.
      if (name === 'ResourceNotFoundException' || name === 'AccessDeniedException')
        throw new ConfigError(`cannot read secret ${secretArn}: ${name}`, { cause: error });
      throw new StoreError(
        'STORE_UNAVAILABLE',
        `cannot read secret ${secretArn}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  }

  destroy(): void {
    this.client.destroy();
  }
}
