import { type Command, InvalidArgumentError } from 'commander';
import { Lab, type LabStatus } from '../../../infra/local/lab.ts';
import { BROKER_COUNTS, type BrokerCount, LAB_SASL } from '../../../infra/local/topology.ts';
import { emit, note, table } from '../output.ts';

export function formatLabStatus(status: LabStatus): string {
  if (status.processes.length === 0) return 'lab is down (start it with `kdr lab up`)';
  const rows: (string | number)[][] = [['PROCESS', 'PID', 'PORT', 'RUNNING', 'ANSWERING', 'LOG']];
  for (const p of status.processes) {
    rows.push([p.name, p.pid, p.port, p.running ? 'yes' : 'NO', p.answering ? 'yes' : 'NO', p.log]);
  }
  const header = [
    `lab is ${status.up ? 'up' : 'DEGRADED'}: Kafka ${status.kafkaVersion}, ${status.brokers} broker(s) per cluster, since ${status.startedAt}`,
    ...status.clusters.map((c) => `  ${c.name.padEnd(8)} bootstrap ${c.bootstrap}`),
    ...(status.sasl
      ? [
          `  sasl     ${LAB_SASL.mechanism}, user ${LAB_SASL.client.username}: set KDR_PRIMARY_SASL_MECHANISM, KDR_PRIMARY_SASL_USERNAME, KDR_PRIMARY_SASL_PASSWORD (and STANDBY)`,
        ]
      : []),
    ...(status.tls
      ? [
          `  tls      CA ${status.tls.caPem}: set KDR_PRIMARY_TLS_CA_FILE and KDR_STANDBY_TLS_CA_FILE to it`,
          ...status.tls.mtls.map(
            (c) =>
              `  mtls     ${c.name.padEnd(8)} bootstrap ${c.bootstrap} (client certificate ${status.tls!.clientChainPem}, key ${status.tls!.clientKeyPem})`,
          ),
        ]
      : []),
    `  aws      endpoint  ${status.awsEndpoint} (moto: S3, DynamoDB, Secrets Manager)`,
    '',
  ];
  return [...header, table(rows)].join('\n');
}

function parseBrokers(value: string): BrokerCount {
  const n = Number(value);
  if (!(BROKER_COUNTS as readonly number[]).includes(n)) {
    throw new InvalidArgumentError(
      `expected ${BROKER_COUNTS.join(' or ')} brokers per cluster, got ${JSON.stringify(value)}`,
    );
  }
  return n as BrokerCount;
}

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .description(
      'the local DR lab: two real KRaft Kafka clusters (primary, standby) and moto (S3, DynamoDB)',
    );

  lab
    .command('up')
    .description('start the lab (idempotent) and wait until every broker and moto answer')
    .option(
      '--brokers <n>',
      'brokers per cluster: 1 or 3 (3 gives RF 3, min.insync.replicas 2)',
      parseBrokers,
      1,
    )
    .option(
      '--sasl',
      `brokers take SASL/SCRAM (user ${LAB_SASL.client.username}, password ${LAB_SASL.client.password}) instead of plaintext`,
    )
    .option(
      '--tls',
      'brokers listen with TLS signed by a private CA the lab makes (keytool), and with mTLS 50 ports above',
    )
    .option('--json', 'print the lab status as JSON')
    .action(async (options: { brokers: BrokerCount; sasl?: boolean; tls?: boolean; json?: boolean }) => {
      const lab = new Lab({ log: note });
      await lab.up(options.brokers, { sasl: Boolean(options.sasl), tls: Boolean(options.tls) });
      const status = await lab.probe();
      emit(Boolean(options.json), status, () => formatLabStatus(status));
    });

  lab
    .command('down')
    .description('stop every process the lab started (by pid) and remove broker data')
    .option('--json', 'print what was stopped as JSON')
    .action(async (options: { json?: boolean }) => {
      const result = await new Lab({ log: note }).down();
      emit(Boolean(options.json), result, () =>
        result.stopped.length > 0 ? `stopped ${result.stopped.join(', ')}` : 'lab was not running',
      );
    });

  lab
    .command('status')
    .description('what the lab runs, with ports, pids and logs (exit 1 if it is not fully up)')
    .option('--json', 'print as JSON')
    .action(async (options: { json?: boolean }) => {
      const status = await new Lab().probe();
      emit(Boolean(options.json), status, () => formatLabStatus(status));
      if (!status.up) process.exitCode = 1;
    });

  lab
    .command('install')
    .description(
      'fetch what the lab needs without starting it: Kafka jars (Maven Central), moto (PyPI), the Lambda emulator (Go proxy), Node 22 and aws-lambda-ric (npm)',
    )
    .action(async () => {
      await new Lab({ log: note }).install();
      note('lab prerequisites installed');
    });

  lab
    .command('stop-cluster')
    .description('stop the brokers of one cluster, keeping their data (to drill failures)')
    .argument('<cluster>', 'primary or standby', parseCluster)
    .option('--kill', 'SIGKILL instead of a clean shutdown')
    .action(async (cluster: 'primary' | 'standby', options: { kill?: boolean }) => {
      await new Lab({ log: note }).stopCluster(cluster, options.kill ? 'SIGKILL' : 'SIGTERM');
    });

  lab
    .command('start-cluster')
    .description('start the stopped brokers of one cluster again on their data')
    .argument('<cluster>', 'primary or standby', parseCluster)
    .action(async (cluster: 'primary' | 'standby') => {
      await new Lab({ log: note }).startCluster(cluster);
    });
}

function parseCluster(value: string): 'primary' | 'standby' {
  if (value !== 'primary' && value !== 'standby') {
    throw new InvalidArgumentError(`expected primary or standby, got ${JSON.stringify(value)}`);
  }
  return value;
}
