import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import type { SecretSource } from '../../src/ports/secrets.ts';
import { credentialsOnce, resolveCredentials } from '../../src/secrets.ts';

/** Reading SASL credentials from their secret (the Secrets Manager adapter itself is tested on moto, e2e/sasl). */

const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kdr/primary-AbCdEf';
const config = loadConfig({ KDR_PRIMARY_SASL_MECHANISM: 'scram-sha-256', KDR_PRIMARY_SASL_SECRET_ARN: arn });
const source = (value: string, calls = { n: 0 }): SecretSource => ({
  getSecretString: async () => {
    calls.n++;
    return value;
  },
});

describe('SASL credentials from a secret', () => {
  it('fills the cluster SASL settings from the secret JSON', async () => {
    const resolved = await resolveCredentials(
      config,
      source(JSON.stringify({ username: 'kdr', password: 'pw-1' })),
    );
    expect(resolved.primary.sasl).toEqual({ mechanism: 'scram-sha-256', username: 'kdr', password: 'pw-1' });
    expect(resolved.primary.saslSecret).toBeUndefined();
    expect(resolved.standby).toEqual(config.standby);
  });

  it('names the secret and the missing field, never a value', async () => {
    await expect(resolveCredentials(config, source('not json pw-2'))).rejects.toThrow(
      `secret ${arn} (KDR_PRIMARY_SASL_SECRET_ARN) is not JSON`,
    );
    await expect(resolveCredentials(config, source('not json pw-2'))).rejects.not.toThrow(/pw-2/);
    await expect(resolveCredentials(config, source(JSON.stringify({ username: 'kdr' })))).rejects.toThrow(
      'has no "password"',
    );
    await expect(resolveCredentials(config, source(JSON.stringify({ password: 'pw-3' })))).rejects.toThrow(
      'has no "username"',
    );
  });

  it('reads the secret once per process, and again after a failure', async () => {
    const calls = { n: 0 };
    let value = 'broken';
    const once = credentialsOnce(config, () => ({
      getSecretString: async () => {
        calls.n++;
        return value;
      },
    }));
    await expect(once()).rejects.toThrow('is not JSON');
    value = JSON.stringify({ username: 'kdr', password: 'pw-4' });
    await once();
    await once();
    expect(calls.n).toBe(2);
  });
});
