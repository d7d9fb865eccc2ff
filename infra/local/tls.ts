import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { LabError } from '../../src/errors.ts';

/**
 * The lab's private CA and the certificates it signs, made with the JDK's keytool (PKCS12 stores the
 * brokers read) and exported as PEM, the form kdr, kcat and the Lambda event source take. openssl only
 * turns the client's private key into PKCS#8 PEM, which keytool cannot export.
 */

/** Lab-only password of every store and key (the stores never leave the lab directory). */
export const LAB_TLS_PASSWORD = 'kdr-lab-tls';

export interface LabPki {
  dir: string;
  /** The CA certificate (PEM): what a client trusts. */
  caPem: string;
  /** PKCS12 stores of the brokers: their key and chain, and the CA they trust (for mTLS clients). */
  brokerKeystore: string;
  truststore: string;
  /** A client certificate signed by the CA, chain first (client, then CA), and its PKCS#8 key (PEM). */
  clientChainPem: string;
  clientKeyPem: string;
  /**
   * The same key encrypted with LAB_TLS_PASSWORD by PBE-SHA1-3DES: the one PBES1 scheme (the only kind
   * the Lambda event source takes) that Node's OpenSSL 3 still reads without its legacy provider.
   */
  clientKeyEncryptedPem: string;
}

export function pkiFiles(dir: string): LabPki {
  return {
    dir,
    caPem: path.join(dir, 'ca.pem'),
    brokerKeystore: path.join(dir, 'broker.p12'),
    truststore: path.join(dir, 'truststore.p12'),
    clientChainPem: path.join(dir, 'client-chain.pem'),
    clientKeyPem: path.join(dir, 'client-key.pem'),
    clientKeyEncryptedPem: path.join(dir, 'client-key-encrypted.pem'),
  };
}

async function run(command: string, args: string[], what: string): Promise<string> {
  const result = await execa(command, args, { reject: false, all: true, timeout: 60_000 });
  if (result.exitCode !== 0)
    throw new LabError('LAB_START_FAILED', `${what} failed (${command} ${args[0]}):\n${result.all}`);
  return result.stdout;
}

const store = (file: string) => ['-keystore', file, '-storetype', 'PKCS12', '-storepass', LAB_TLS_PASSWORD];

/** A key pair in its own store, signed by the CA with the given extensions; returns the signed PEM. */
async function signedKeyPair(
  dir: string,
  name: string,
  dname: string,
  extensions: string[],
): Promise<{ keystore: string; certPem: string }> {
  const keystore = path.join(dir, `${name}.p12`);
  const keytool = (args: string[], what: string) => run('keytool', args, `keytool: ${what}`);
  await keytool(
    ['-genkeypair', '-alias', name, '-keyalg', 'RSA', '-keysize', '2048', '-dname', dname, '-validity', '825']
      .concat(store(keystore))
      .concat(['-keypass', LAB_TLS_PASSWORD]),
    `key pair ${name}`,
  );
  const csr = path.join(dir, `${name}.csr`);
  await keytool(['-certreq', '-alias', name, '-file', csr, ...store(keystore)], `request ${name}`);
  const certPem = path.join(dir, `${name}.pem`);
  await keytool(
    ['-gencert', '-alias', 'ca', '-infile', csr, '-outfile', certPem, '-rfc', '-validity', '825']
      .concat(extensions.flatMap((e) => ['-ext', e]))
      .concat(store(path.join(dir, 'ca.p12'))),
    `sign ${name}`,
  );
  // The store must hold the CA before it can take a reply signed by it.
  await keytool(
    ['-importcert', '-alias', 'ca', '-file', path.join(dir, 'ca.pem'), '-noprompt', ...store(keystore)],
    `${name} trusts ca`,
  );
  await keytool(['-importcert', '-alias', name, '-file', certPem, ...store(keystore)], `${name} certificate`);
  rmSync(csr);
  return { keystore, certPem };
}

/** A CA alone (its store and PEM): the lab's, or a stranger's for a wrong-CA drill. */
export async function createCa(dir: string, commonName: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const caStore = path.join(dir, 'ca.p12');
  await run(
    'keytool',
    ['-genkeypair', '-alias', 'ca', '-keyalg', 'RSA', '-keysize', '2048', '-dname', `CN=${commonName}`]
      .concat(['-ext', 'bc:c', '-validity', '3650', '-keypass', LAB_TLS_PASSWORD])
      .concat(store(caStore)),
    'keytool: CA key pair',
  );
  const caPem = path.join(dir, 'ca.pem');
  await run(
    'keytool',
    ['-exportcert', '-rfc', '-alias', 'ca', '-file', caPem, ...store(caStore)],
    'keytool: CA PEM',
  );
  return caPem;
}

/**
 * The lab's PKI in `dir`, made once and kept across `lab up`s (a client given the CA keeps working). Made
 * in a scratch directory and renamed into place, so that a run killed half-way leaves nothing half-made.
 */
export async function ensureLabPki(dir: string, log: (line: string) => void = () => {}): Promise<LabPki> {
  const files = pkiFiles(dir);
  // The last file made: a directory with it is complete (an older lab's lacks it and is remade).
  if (existsSync(files.clientKeyEncryptedPem)) return files;
  log(`creating the lab's private CA and certificates in ${dir} (keytool)`);
  const scratch = `${dir}.partial`;
  rmSync(scratch, { recursive: true, force: true });
  await createCa(scratch, 'kdr lab CA');
  // Brokers: 127.0.0.1 and localhost in the SAN (clients check it); clientAuth too, since brokers
  // connect to each other over the same listener.
  await signedKeyPair(scratch, 'broker', 'CN=kdr lab broker', [
    'san=ip:127.0.0.1,dns:localhost',
    'eku=serverAuth,clientAuth',
  ]);
  await run(
    'keytool',
    [
      '-importcert',
      '-alias',
      'ca',
      '-file',
      path.join(scratch, 'ca.pem'),
      '-noprompt',
      ...store(path.join(scratch, 'truststore.p12')),
    ],
    'keytool: truststore',
  );
  const client = await signedKeyPair(scratch, 'client', 'CN=kdr', ['eku=clientAuth']);
  const chain = readFileSync(client.certPem, 'utf8') + readFileSync(path.join(scratch, 'ca.pem'), 'utf8');
  writeFileSync(path.join(scratch, 'client-chain.pem'), chain);
  const keyOut = await run(
    'openssl',
    ['pkcs12', '-in', client.keystore, '-nocerts', '-nodes', '-passin', `pass:${LAB_TLS_PASSWORD}`],
    'openssl: client key to PEM',
  );
  const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(keyOut)?.[0];
  if (!key) throw new LabError('LAB_START_FAILED', 'openssl pkcs12 printed no PKCS#8 private key');
  writeFileSync(path.join(scratch, 'client-key.pem'), `${key}\n`, { mode: 0o600 });
  await run(
    'openssl',
    ['pkcs8', '-topk8', '-v1', 'PBE-SHA1-3DES', '-in', path.join(scratch, 'client-key.pem')].concat([
      '-out',
      path.join(scratch, 'client-key-encrypted.pem'),
      '-passout',
      `pass:${LAB_TLS_PASSWORD}`,
    ]),
    'openssl: encrypted client key',
  );
  rmSync(dir, { recursive: true, force: true });
  renameSync(scratch, dir);
  return files;
}
