import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, redactConfig } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';

describe('loadConfig', () => {
  it('targets the lab when nothing is set', () => {
    const config = loadConfig({});
    expect(config.primary).toEqual({ alias: 'primary', brokers: ['127.0.0.1:19092'], ssl: false });
    expect(config.standby.brokers).toEqual(['127.0.0.1:29092']);
    expect(config.aws.endpoint).toBe('http://127.0.0.1:4566');
    expect(config.aws.credentials).toEqual({ accessKeyId: 'testing', secretAccessKey: 'testing' });
    expect(config.topics).toBe('.*');
  });

  it('moves every lab default with KDR_LAB_PORT_OFFSET', () => {
    const config = loadConfig({ KDR_LAB_PORT_OFFSET: '1000' });
    expect(config.primary.brokers).toEqual(['127.0.0.1:20092']);
    expect(config.standby.brokers).toEqual(['127.0.0.1:30092']);
    expect(config.aws.endpoint).toBe('http://127.0.0.1:5566');
  });

  it('uses no lab default inside Lambda', () => {
    const config = loadConfig({ AWS_LAMBDA_FUNCTION_NAME: 'kdr-mirror', AWS_REGION: 'eu-west-1' });
    expect(config.aws.endpoint).toBeUndefined();
    expect(config.aws.credentials).toBeUndefined();
    expect(config.aws.region).toBe('eu-west-1');
    expect(config.inLambda).toBe(true);
  });

  it('parses cluster settings, lists and numbers', () => {
    const config = loadConfig({
      KDR_PRIMARY_BROKERS: 'b-1.example:9096, b-2.example:9096',
      KDR_PRIMARY_TLS: 'true',
      KDR_PRIMARY_SASL_MECHANISM: 'SCRAM-SHA-512',
      KDR_PRIMARY_SASL_USERNAME: 'kdr',
      KDR_PRIMARY_SASL_PASSWORD: 's3cret',
      KDR_MIRROR_MAX_TRANSACTION_RECORDS: '500',
      KDR_STANDBY_COMPRESSION: 'lz4',
    });
    expect(config.primary).toEqual({
      alias: 'primary',
      brokers: ['b-1.example:9096', 'b-2.example:9096'],
      ssl: true,
      sasl: { mechanism: 'scram-sha-512', username: 'kdr', password: 's3cret' },
    });
    expect(config.mirror.maxTransactionRecords).toBe(500);
    expect(config.standbyCompression).toBe('lz4');
    expect(JSON.stringify(redactConfig(config))).not.toContain('s3cret');
  });

  it.each([
    ['KDR_PRIMARY_BROKERS', 'localhost', 'expected a comma-separated list of host:port'],
    ['KDR_STANDBY_BROKERS', 'a:99999', 'port 1-65535'],
    ['KDR_TOPICS', '([', 'expected a JavaScript regular expression'],
    ['KDR_PRIMARY_TLS', 'maybe', 'expected true or false, got "maybe"'],
    ['KDR_STANDBY_COMPRESSION', 'brotli', 'expected one of none, gzip, snappy, lz4, zstd, got "brotli"'],
    ['KDR_MIRROR_MAX_TRANSACTION_RECORDS', '0', 'expected at least 1, got 0'],
    ['KDR_SNAPSHOT_COMPRESSION', 'lz4', 'expected one of zstd, gzip, got "lz4"'],
    ['KDR_SNAPSHOT_SEGMENT_BYTES', '536870913', 'expected at most 536870912, got 536870913'],
    ['KDR_MIRROR_PARTITION_CONCURRENCY', 'ten', 'expected a whole number, got "ten"'],
    ['AWS_ENDPOINT_URL', 'ftp://x', 'expected an http(s) URL'],
    ['AWS_REGION', 'mars', 'expected an AWS region'],
    ['KDR_BUCKET', 'Bad_Bucket', 'expected an S3 bucket name'],
    ['KDR_PAIR', 'a b', 'expected a pair name'],
    ['KDR_LAB_PORT_OFFSET', '4000', 'expected at most 3500 (lab ports stay below the ephemeral range'],
  ])('rejects %s=%s naming the variable and what was expected', (variable, value, expected) => {
    const load = () => loadConfig({ [variable]: value });
    expect(load).toThrow(ConfigError);
    expect(load).toThrow(`${variable}: `);
    expect(load).toThrow(expected);
  });

  it('never echoes a bad password', () => {
    try {
      loadConfig({
        KDR_PRIMARY_SASL_PASSWORD: '',
        KDR_PRIMARY_SASL_MECHANISM: 'plain',
        KDR_PRIMARY_SASL_USERNAME: 'u',
      });
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toContain(
        'KDR_PRIMARY_SASL_PASSWORD (or _PASSWORD_FILE), or KDR_PRIMARY_SASL_SECRET_ARN, must be set too',
      );
    }
  });

  it('requires SASL credentials with a mechanism, and distinct aliases', () => {
    expect(() => loadConfig({ KDR_STANDBY_SASL_MECHANISM: 'plain' })).toThrow(
      'KDR_STANDBY_SASL_MECHANISM is plain, so KDR_STANDBY_SASL_USERNAME and KDR_STANDBY_SASL_PASSWORD (or _PASSWORD_FILE), or KDR_STANDBY_SASL_SECRET_ARN, must be set too',
    );
    expect(() => loadConfig({ KDR_PRIMARY_ALIAS: 'x', KDR_STANDBY_ALIAS: 'x' })).toThrow('must differ');
  });

  it('takes SASL credentials from a secret, a password file, or the environment, one at a time', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kdr/primary-AbCdEf';
    const fromSecret = loadConfig({
      KDR_PRIMARY_SASL_MECHANISM: 'scram-sha-512',
      KDR_PRIMARY_SASL_SECRET_ARN: arn,
    });
    expect(fromSecret.primary.saslSecret).toEqual({ mechanism: 'scram-sha-512', secretArn: arn });
    expect(fromSecret.primary.sasl).toBeUndefined();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-config-'));
    writeFileSync(path.join(dir, 'pw'), 'file-secret\n');
    const fromFile = loadConfig({
      KDR_STANDBY_SASL_MECHANISM: 'plain',
      KDR_STANDBY_SASL_USERNAME: 'u',
      KDR_STANDBY_SASL_PASSWORD_FILE: path.join(dir, 'pw'),
    });
    expect(fromFile.standby.sasl).toEqual({ mechanism: 'plain', username: 'u', password: 'file-secret' });
    expect(() =>
      loadConfig({
        KDR_PRIMARY_SASL_MECHANISM: 'plain',
        KDR_PRIMARY_SASL_PASSWORD: 'x',
        KDR_PRIMARY_SASL_SECRET_ARN: arn,
      }),
    ).toThrow(
      'set one of KDR_PRIMARY_SASL_PASSWORD, KDR_PRIMARY_SASL_PASSWORD_FILE and KDR_PRIMARY_SASL_SECRET_ARN',
    );
    expect(() => loadConfig({ KDR_PRIMARY_SASL_SECRET_ARN: arn })).toThrow(
      'KDR_PRIMARY_SASL_MECHANISM must be set',
    );
    expect(() =>
      loadConfig({ KDR_PRIMARY_SASL_MECHANISM: 'plain', KDR_PRIMARY_SASL_SECRET_ARN: 'kdr/primary' }),
    ).toThrow('KDR_PRIMARY_SASL_SECRET_ARN: expected a Secrets Manager secret ARN, got "kdr/primary"');
    expect(() =>
      loadConfig({
        KDR_PRIMARY_SASL_MECHANISM: 'plain',
        KDR_PRIMARY_SASL_USERNAME: 'u',
        KDR_PRIMARY_SASL_PASSWORD_FILE: path.join(dir, 'missing'),
      }),
    ).toThrow(`KDR_PRIMARY_SASL_PASSWORD_FILE: cannot read ${path.join(dir, 'missing')} (ENOENT)`);
  });

  it('takes a private CA and a client certificate from files or secrets, and refuses half of one', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kdr-config-tls-'));
    const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const key = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';
    const file = (name: string, text: string) => {
      writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    const ca = file('ca.pem', cert);
    const fromFiles = loadConfig({
      KDR_PRIMARY_TLS_CA_FILE: ca,
      KDR_PRIMARY_TLS_CERT_FILE: file('client.pem', cert),
      KDR_PRIMARY_TLS_KEY_FILE: file('client.key', key),
      KDR_PRIMARY_TLS_KEY_PASSWORD: 'kp',
    });
    // A CA or a certificate means TLS, without KDR_PRIMARY_TLS.
    expect(fromFiles.primary).toMatchObject({ ssl: true, tls: { ca: cert, cert, key, passphrase: 'kp' } });
    expect(fromFiles.standby.ssl).toBe(false);
    expect(JSON.stringify(redactConfig(fromFiles))).not.toContain('PRIVATE KEY');
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kdr/ca-AbCdEf';
    expect(loadConfig({ KDR_STANDBY_TLS_CA_SECRET_ARN: arn }).standby).toMatchObject({
      ssl: true,
      tlsSecrets: { caSecretArn: arn },
    });
    const refusals: [Record<string, string>, string][] = [
      [
        { KDR_PRIMARY_TLS: 'false', KDR_PRIMARY_TLS_CA_FILE: ca },
        'KDR_PRIMARY_TLS is false, but KDR_PRIMARY_TLS_CA_FILE need TLS',
      ],
      [
        { KDR_PRIMARY_TLS_CA_FILE: ca, KDR_PRIMARY_TLS_CA_SECRET_ARN: arn },
        'set one of KDR_PRIMARY_TLS_CA_FILE and KDR_PRIMARY_TLS_CA_SECRET_ARN',
      ],
      [
        { KDR_STANDBY_TLS_CERT_FILE: ca },
        'KDR_STANDBY_TLS_CERT_FILE and KDR_STANDBY_TLS_KEY_FILE go together',
      ],
      [
        { KDR_STANDBY_TLS_KEY_PASSWORD: 'kp' },
        'KDR_STANDBY_TLS_KEY_PASSWORD is set but KDR_STANDBY_TLS_KEY_FILE is not',
      ],
      // A password beside a secret would be dropped without a word: the secret carries its own.
      [
        { KDR_STANDBY_TLS_CLIENT_SECRET_ARN: arn, KDR_STANDBY_TLS_KEY_PASSWORD: 'kp' },
        'KDR_STANDBY_TLS_KEY_PASSWORD is set but KDR_STANDBY_TLS_KEY_FILE is not',
      ],
      [
        {
          KDR_PRIMARY_TLS_CERT_FILE: ca,
          KDR_PRIMARY_TLS_KEY_FILE: file(
            'encrypted.key',
            '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----\n',
          ),
        },
        `KDR_PRIMARY_TLS_KEY_FILE: ${path.join(dir, 'encrypted.key')} is encrypted: set KDR_PRIMARY_TLS_KEY_PASSWORD`,
      ],
      [
        { KDR_PRIMARY_TLS_CA_FILE: path.join(dir, 'missing.pem') },
        `KDR_PRIMARY_TLS_CA_FILE: cannot read ${path.join(dir, 'missing.pem')} (ENOENT)`,
      ],
      [
        { KDR_PRIMARY_TLS_CA_FILE: file('key-as-ca.pem', key) },
        `KDR_PRIMARY_TLS_CA_FILE: ${path.join(dir, 'key-as-ca.pem')} holds no PEM certificate`,
      ],
      [
        { KDR_PRIMARY_TLS_CERT_FILE: ca, KDR_PRIMARY_TLS_KEY_FILE: ca },
        `KDR_PRIMARY_TLS_KEY_FILE: ${ca} holds no PEM private key`,
      ],
      [
        { KDR_PRIMARY_TLS_CLIENT_SECRET_ARN: 'kdr/client' },
        'KDR_PRIMARY_TLS_CLIENT_SECRET_ARN: expected a Secrets Manager secret ARN, got "kdr/client"',
      ],
    ];
    for (const [env, message] of refusals) expect(() => loadConfig(env), message).toThrow(message);
  });

  it('reports every bad variable at once', () => {
    expect(() => loadConfig({ KDR_PRIMARY_BROKERS: 'x', KDR_TOPICS: '[' })).toThrow(
      /KDR_PRIMARY_BROKERS: .*\n\s+KDR_TOPICS: /,
    );
  });
});
