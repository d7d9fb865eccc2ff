/**
 * The lab's fixed shape: two KRaft clusters on loopback plus moto. Pure data, so the ports, the broker
 * properties and the status table all come from one place.
 */

import { LAB_DEFAULTS } from '../../src/config.ts';

export const KAFKA_VERSION = '4.3.1';
export const LAB_HOST = LAB_DEFAULTS.host;
export const BROKER_COUNTS = [1, 3] as const;
export type BrokerCount = (typeof BROKER_COUNTS)[number];

export type ClusterName = 'primary' | 'standby';

export interface LabNode {
  cluster: ClusterName;
  nodeId: number;
  brokerPort: number;
  controllerPort: number;
}

export interface LabCluster {
  name: ClusterName;
  nodes: LabNode[];
  bootstrap: string;
  /** The listeners that require a client certificate (a lab started with --tls). */
  mtlsBootstrap: string;
}

const BASE_PORT: Record<ClusterName, number> = {
  primary: LAB_DEFAULTS.primaryPort,
  standby: LAB_DEFAULTS.standbyPort,
};
/** Controllers listen 100 ports above their broker: 19192-19194 and 29192-29194. */
const CONTROLLER_OFFSET = 100;
/** With --tls, a second TLS listener that requires a client certificate listens 50 above: 19142-19144. */
export const MTLS_PORT_OFFSET = 50;

export function motoPort(portOffset = 0): number {
  return LAB_DEFAULTS.motoPort + portOffset;
}

export function labClusters(brokers: BrokerCount, portOffset = 0): LabCluster[] {
  return (['primary', 'standby'] as const).map((name) => {
    const nodes = Array.from({ length: brokers }, (_, i) => ({
      cluster: name,
      nodeId: i + 1,
      brokerPort: BASE_PORT[name] + portOffset + i,
      controllerPort: BASE_PORT[name] + portOffset + CONTROLLER_OFFSET + i,
    }));
    const at = (offset: number) => nodes.map((n) => `${LAB_HOST}:${n.brokerPort + offset}`).join(',');
    return { name, nodes, bootstrap: at(0), mtlsBootstrap: at(MTLS_PORT_OFFSET) };
  });
}

/**
 * The SCRAM users of a lab started with `--sasl`: the brokers talk to each other as `admin`; kdr and the
 * tests connect as `kdr`. Lab-only credentials, bootstrapped into the KRaft metadata at format time.
 */
export const LAB_SASL = {
  mechanism: 'scram-sha-512',
  admin: { username: 'admin', password: 'lab-admin-secret' },
  client: { username: 'kdr', password: 'kdr-lab-secret' },
} as const;

export function nodeName(node: Pick<LabNode, 'cluster' | 'nodeId'>): string {
  return `${node.cluster}-${node.nodeId}`;
}

/**
 * server.properties for one combined broker+controller node. Replication defaults follow the cluster
 * size (3 brokers: RF 3, min.insync.replicas 2) so that reliability tests can kill a broker; threads and
 * buffers are trimmed so that six brokers fit on a 2-core machine.
 */
export function brokerProperties(
  cluster: LabCluster,
  node: LabNode,
  logDir: string,
  options: { sasl?: boolean; tls?: LabTlsStores; advertiseShift?: number } = {},
): string {
  const shift = options.advertiseShift ?? 0;
  if (options.tls) return tlsBrokerProperties(cluster, node, logDir, options.tls, shift);
  // With --sasl the broker listener takes SCRAM-SHA-256/512 and PLAIN (the mechanisms kdr supports);
  // the controller listener stays on loopback in plaintext (it is not what clients reach).
  const listener = options.sasl ? 'SASL_PLAINTEXT' : 'PLAINTEXT';
  const security: Record<string, string> = options.sasl
    ? {
        'sasl.enabled.mechanisms': 'SCRAM-SHA-512,SCRAM-SHA-256,PLAIN',
        'sasl.mechanism.inter.broker.protocol': 'SCRAM-SHA-512',
        // One JAAS entry per enabled mechanism on the listener (the broker needs each to accept it).
        ...Object.fromEntries(
          ['scram-sha-512', 'scram-sha-256'].map((m) => [
            `listener.name.sasl_plaintext.${m}.sasl.jaas.config`,
            `org.apache.kafka.common.security.scram.ScramLoginModule required username="${LAB_SASL.admin.username}" password="${LAB_SASL.admin.password}";`,
          ]),
        ),
        // PLAIN checks passwords against this list (user_<name>), not against the SCRAM credentials.
        'listener.name.sasl_plaintext.plain.sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required username="${LAB_SASL.admin.username}" password="${LAB_SASL.admin.password}" ${[LAB_SASL.admin, LAB_SASL.client].map((u) => `user_${u.username}="${u.password}"`).join(' ')};`,
      }
    : {};
  return render(
    {
      listeners: `${listener}://${LAB_HOST}:${node.brokerPort},CONTROLLER://${LAB_HOST}:${node.controllerPort}`,
      // A shift makes clients reach the broker through a port of the tests' choosing (a TCP proxy).
      'advertised.listeners': `${listener}://${LAB_HOST}:${node.brokerPort + shift}`,
      'inter.broker.listener.name': listener,
      'listener.security.protocol.map': `${listener}:${listener},CONTROLLER:PLAINTEXT`,
      ...security,
    },
    cluster,
    node,
    logDir,
  );
}

/** The PKCS12 stores a TLS lab's brokers read (infra/local/tls.ts makes them). */
export interface LabTlsStores {
  keystore: string;
  truststore: string;
  password: string;
}

/**
 * Two TLS listeners: SSL (server certificate only) on the broker port, and MTLS, which requires a client
 * certificate signed by the lab CA, 50 ports above. Kafka answers metadata with the addresses of the
 * listener a request came in on, so a client stays on the listener it bootstrapped from.
 */
function tlsBrokerProperties(
  cluster: LabCluster,
  node: LabNode,
  logDir: string,
  stores: LabTlsStores,
  shift: number,
): string {
  const mtls = node.brokerPort + MTLS_PORT_OFFSET;
  return render(
    {
      listeners: `SSL://${LAB_HOST}:${node.brokerPort},MTLS://${LAB_HOST}:${mtls},CONTROLLER://${LAB_HOST}:${node.controllerPort}`,
      'advertised.listeners': `SSL://${LAB_HOST}:${node.brokerPort + shift},MTLS://${LAB_HOST}:${mtls + shift}`,
      'inter.broker.listener.name': 'SSL',
      'listener.security.protocol.map': 'SSL:SSL,MTLS:SSL,CONTROLLER:PLAINTEXT',
      'ssl.keystore.type': 'PKCS12',
      'ssl.keystore.location': stores.keystore,
      'ssl.keystore.password': stores.password,
      'ssl.key.password': stores.password,
      'ssl.truststore.type': 'PKCS12',
      'ssl.truststore.location': stores.truststore,
      'ssl.truststore.password': stores.password,
      'ssl.client.auth': 'none',
      'listener.name.mtls.ssl.client.auth': 'required',
    },
    cluster,
    node,
    logDir,
  );
}

function render(
  listeners: Record<string, string | number>,
  cluster: LabCluster,
  node: LabNode,
  logDir: string,
): string {
  const size = cluster.nodes.length;
  const minIsr = size >= 3 ? 2 : 1;
  const props: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': node.nodeId,
    'controller.quorum.voters': cluster.nodes
      .map((n) => `${n.nodeId}@${LAB_HOST}:${n.controllerPort}`)
      .join(','),
    'controller.listener.names': 'CONTROLLER',
    ...listeners,
    'log.dirs': logDir,
    'num.partitions': 1,
    'default.replication.factor': size,
    'min.insync.replicas': minIsr,
    'offsets.topic.replication.factor': size,
    'offsets.topic.num.partitions': 10,
    'transaction.state.log.replication.factor': size,
    'transaction.state.log.min.isr': minIsr,
    'transaction.state.log.num.partitions': 10,
    'share.coordinator.state.topic.replication.factor': size,
    'share.coordinator.state.topic.min.isr': minIsr,
    // Topics are created on purpose (kdr's topic sync, tests); a typo must not create one.
    'auto.create.topics.enable': false,
    'group.initial.rebalance.delay.ms': 0,
    'num.network.threads': 2,
    'num.io.threads': 4,
    'num.recovery.threads.per.data.dir': 1,
    'background.threads': 4,
    'log.cleaner.threads': 1,
    'log.cleaner.dedupe.buffer.size': 16 * 1024 * 1024,
    'log.cleaner.backoff.ms': 1000,
    'log.retention.check.interval.ms': 5000,
  };
  return `${Object.entries(props)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;
}
