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

describe('TLS material from the secrets the event source reads', () => {
  const caArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kdr/ca-AbCdEf';
  const clientArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kdr/client-AbCdEf';
  const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const key = '-----BEGIN PRIVATE KEY-----\nMIIE-secret-bytes\n-----END PRIVATE KEY-----\n';
  const tlsConfig = loadConfig({
    KDR_STANDBY_TLS_CA_SECRET_ARN: caArn,
    KDR_STANDBY_TLS_CLIENT_SECRET_ARN: clientArn,
  });
  const secrets = (values: Record<string, object | string>): SecretSource => ({
    getSecretString: async (id) => {
      const value = values[id];
      return typeof value === 'string' ? value : JSON.stringify(value);
    },
  });

  it('turns on TLS and fills the CA, certificate, key and key password', async () => {
    expect(tlsConfig.standby.ssl).toBe(true);
    const resolved = await resolveCredentials(
      tlsConfig,
      secrets({
        [caArn]: { certificate: cert },
        [clientArn]: { certificate: cert + cert, privateKey: key, privateKeyPassword: 'kp' },
      }),
    );
    expect(resolved.standby.tls).toEqual({ ca: cert, cert: cert + cert, key, passphrase: 'kp' });
    expect(resolved.standby.tlsSecrets).toBeUndefined();
    expect(resolved.primary).toEqual(tlsConfig.primary);
  });

  it('names the secret and the missing or malformed field, never the key', async () => {
    const good = { [caArn]: { certificate: cert } };
    await expect(
      resolveCredentials(tlsConfig, secrets({ ...good, [clientArn]: { certificate: cert } })),
    ).rejects.toThrow(`secret ${clientArn} (KDR_STANDBY_TLS_CLIENT_SECRET_ARN) has no "privateKey"`);
    await expect(
      resolveCredentials(
        tlsConfig,
        secrets({ ...good, [clientArn]: { certificate: cert, privateKey: 'MIIE-secret-bytes' } }),
      ),
    ).rejects.toThrow(/"privateKey" is not PEM/);
    await expect(
      resolveCredentials(
        tlsConfig,
        secrets({ ...good, [clientArn]: { certificate: cert, privateKey: 'MIIE-secret-bytes' } }),
      ),
    ).rejects.not.toThrow(/secret-bytes/);
    // PKCS#1 ("RSA PRIVATE KEY"): the event source reads only PKCS#8, so kdr refuses it in the shared secret.
    const pkcs1 = '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n';
    await expect(
      resolveCredentials(
        tlsConfig,
        secrets({ ...good, [clientArn]: { certificate: cert, privateKey: pkcs1 } }),
      ),
    ).rejects.toThrow(/"privateKey" is not PEM/);
    const encrypted = '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----\n';
    await expect(
      resolveCredentials(
        tlsConfig,
        secrets({ ...good, [clientArn]: { certificate: cert, privateKey: encrypted } }),
      ),
    ).rejects.toThrow(
      `secret ${clientArn} (KDR_STANDBY_TLS_CLIENT_SECRET_ARN): "privateKey" is encrypted but there is no "privateKeyPassword"`,
    );
    await expect(
      resolveCredentials(
        tlsConfig,
        secrets({ [caArn]: { cert }, [clientArn]: { certificate: cert, privateKey: key } }),
      ),
    ).rejects.toThrow(`secret ${caArn} (KDR_STANDBY_TLS_CA_SECRET_ARN) has no "certificate"`);
  });

  it('reads TLS secrets once per process too', async () => {
    const calls = { n: 0 };
    const once = credentialsOnce(loadConfig({ KDR_PRIMARY_TLS_CA_SECRET_ARN: caArn }), () => {
      calls.n++;
      return secrets({ [caArn]: { certificate: cert } });
    });
    expect((await once()).primary.tls?.ca).toBe(cert);
    await once();
    expect(calls.n).toBe(1);
  });
});
