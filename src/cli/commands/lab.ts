import { type Command, InvalidArgumentError } from 'commander';
import { Lab, type LabStatus } from '../../../infra/local/lab.ts';
import { BROKER_COUNTS, type BrokerCount, LAB_SASL } from '../../../infra/local/topology.ts';
import { InputError, LabError } from '../../errors.ts';
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
    ...(status.lambda
      ? [
          `  lambda   API       ${status.lambda.apiUrl} (set AWS_ENDPOINT_URL_LAMBDA to it for \`aws lambda invoke\`)`,
        ]
      : []),
    '',
  ];
  if (status.lambda)
    rows.push([
      status.lambda.name,
      status.lambda.pid,
      status.lambda.port,
      status.lambda.running ? 'yes' : 'NO',
      status.lambda.answering ? 'yes' : 'NO',
      status.lambda.log,
    ]);
  return [...header, table(rows), ...formatLambda(status.lambda)].join('\n');
}

/** The containers per function and the event sources, as the lab's Lambda API reports them. */
function formatLambda(lambda: LabStatus['lambda']): string[] {
  if (!lambda?.report) return [];
  const { functions, mappings } = lambda.report;
  const fnRows: (string | number)[][] = [['FUNCTION', 'CONTAINERS', 'BUSY', 'INVOCATIONS', 'COLD STARTS']];
  for (const f of functions)
    fnRows.push([f.functionName, f.busy + f.idle, f.busy, f.invocations, f.coldStarts]);
  const esmRows: (string | number)[][] = [
    ['EVENT SOURCE', 'TOPIC', 'STATE', 'GROUP', 'RECORDS', 'INVOCATIONS', 'FAILED'],
  ];
  for (const m of mappings)
    esmRows.push([
      m.UUID,
      m.Topics.join(','),
      m.State,
      m.consumerGroupId ?? '',
      m.records ?? 0,
      m.invocations ?? 0,
      m.failures ?? 0,
    ]);
  return ['', table(fnRows), '', table(esmRows)];
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
    .option(
      '--lambda',
      'also run the packaged functions (sls package --stage local) under the Lambda Runtime Interface Emulator, fed by a Kafka event source and schedules as the template defines them, behind a lab Lambda API',
    )
    .option(
      '--lambda-param <name=value>',
      'a param for that package, e.g. topics=orders,payments or mirrorBatchSize=100 (repeatable)',
      collectParam,
      [],
    )
    .option('--json', 'print the lab status as JSON')
    .action(
      async (options: {
        brokers: BrokerCount;
        sasl?: boolean;
        tls?: boolean;
        lambda?: boolean;
        lambdaParam: string[];
        json?: boolean;
      }) => {
        if (options.lambdaParam.length > 0 && !options.lambda)
          throw new InputError('--lambda-param is for --lambda: add --lambda');
        if (options.lambda && (options.sasl || options.tls))
          throw new InputError(
            '--lambda runs against a plaintext lab (the event source takes no SASL or TLS in the lab yet): drop --sasl/--tls',
          );
        const lab = new Lab({ log: note });
        await lab.up(options.brokers, { sasl: Boolean(options.sasl), tls: Boolean(options.tls) });
        if (options.lambda) await lab.upLambda(options.lambdaParam);
        const status = await lab.probe();
        emit(Boolean(options.json), status, () => formatLabStatus(status));
      },
    );

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
    .command('stop-lambda')
    .description('stop what `lab up --lambda` started (the event sources, schedules and every container)')
    .option('--json', 'print what was stopped as JSON')
    .action(async (options: { json?: boolean }) => {
      const stopped = await new Lab({ log: note }).stopLambda();
      emit(Boolean(options.json), { stopped }, () =>
        stopped ? 'stopped the lab Lambda functions' : 'the lab Lambda functions were not running',
      );
    });

  lab
    .command('kill-function')
    .description(
      'kill every container of a lab Lambda function, as Lambda recycles them: its next invocation starts cold',
    )
    .argument('<function>', 'the function: mirror, checkpoint, snapshot, failover, failback, restore, status')
    .option('--json', 'print how many containers were killed as JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      const lambda = (await new Lab().probe()).lambda;
      if (!lambda?.answering)
        throw new LabError(
          'LAB_STATE_CONFLICT',
          'the lab Lambda functions are not running: `kdr lab up --lambda`',
        );
      const response = await fetch(`${lambda.apiUrl}/lab/functions/${encodeURIComponent(name)}/kill`, {
        method: 'POST',
      });
      const body = (await response.json()) as { function: string; killed: number; message?: string };
      if (!response.ok) throw new InputError(body.message ?? `HTTP ${response.status}`);
      emit(Boolean(options.json), body, () => `killed ${body.killed} container(s) of ${name}`);
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

function collectParam(value: string, previous: string[]): string[] {
  if (!/^[A-Za-z][A-Za-z0-9]*=/.test(value))
    throw new InvalidArgumentError(
      `expected name=value (a serverless.yml param), got ${JSON.stringify(value)}`,
    );
  return [...previous, value];
}

function parseCluster(value: string): 'primary' | 'standby' {
  if (value !== 'primary' && value !== 'standby') {
    throw new InvalidArgumentError(`expected primary or standby, got ${JSON.stringify(value)}`);
  }
  return value;
}
