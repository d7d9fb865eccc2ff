import { describe, expect, it } from 'vitest';
import { brokerProperties, labClusters, motoPort } from '../../../infra/local/topology.ts';

const parse = (text: string) =>
  Object.fromEntries(
    text
      .trim()
      .split('\n')
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  );

describe('lab topology', () => {
  it('puts one broker per cluster on 19092 and 29092 by default', () => {
    const [primary, standby] = labClusters(1);
    expect(primary!.bootstrap).toBe('127.0.0.1:19092');
    expect(standby!.bootstrap).toBe('127.0.0.1:29092');
    expect(motoPort()).toBe(4566);
  });

  it('gives three brokers per cluster consecutive ports, controllers 100 above', () => {
    const [primary, standby] = labClusters(3);
    expect(primary!.nodes.map((n) => n.brokerPort)).toEqual([19092, 19093, 19094]);
    expect(standby!.nodes.map((n) => n.brokerPort)).toEqual([29092, 29093, 29094]);
    expect(primary!.nodes.map((n) => n.controllerPort)).toEqual([19192, 19193, 19194]);
  });

  it('shifts every port by the offset', () => {
    const [primary] = labClusters(3, 1000);
    expect(primary!.bootstrap).toBe('127.0.0.1:20092,127.0.0.1:20093,127.0.0.1:20094');
    expect(motoPort(1000)).toBe(5566);
  });

  it('makes a three-broker cluster replicate 3 ways with min.insync.replicas 2', () => {
    const cluster = labClusters(3)[0]!;
    const props = parse(brokerProperties(cluster, cluster.nodes[1]!, '/data/primary-2'));
    expect(props['node.id']).toBe('2');
    expect(props['controller.quorum.voters']).toBe('1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194');
    expect(props['default.replication.factor']).toBe('3');
    expect(props['min.insync.replicas']).toBe('2');
    expect(props['transaction.state.log.min.isr']).toBe('2');
    expect(props.listeners).toBe('PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193');
    expect(props['log.dirs']).toBe('/data/primary-2');
  });

  it('keeps a one-broker cluster usable (RF 1, min.insync.replicas 1)', () => {
    const cluster = labClusters(1)[1]!;
    const props = parse(brokerProperties(cluster, cluster.nodes[0]!, '/d'));
    expect(props['default.replication.factor']).toBe('1');
    expect(props['min.insync.replicas']).toBe('1');
    expect(props['auto.create.topics.enable']).toBe('false');
  });

  it('with TLS: a server-certificate listener, an mTLS one 50 above, brokers talking over TLS', () => {
    const cluster = labClusters(1, 3200)[0]!;
    const stores = { keystore: '/t/broker.p12', truststore: '/t/trust.p12', password: 'pw' };
    const props = parse(
      brokerProperties(cluster, cluster.nodes[0]!, '/d', { tls: stores, advertiseShift: 7 }),
    );
    expect(props.listeners).toBe('SSL://127.0.0.1:22292,MTLS://127.0.0.1:22342,CONTROLLER://127.0.0.1:22392');
    expect(props['advertised.listeners']).toBe('SSL://127.0.0.1:22299,MTLS://127.0.0.1:22349');
    expect(props['listener.security.protocol.map']).toBe('SSL:SSL,MTLS:SSL,CONTROLLER:PLAINTEXT');
    expect(props['inter.broker.listener.name']).toBe('SSL');
    expect(props['ssl.client.auth']).toBe('none');
    expect(props['listener.name.mtls.ssl.client.auth']).toBe('required');
    expect(props['ssl.keystore.location']).toBe('/t/broker.p12');
    expect(props['ssl.truststore.location']).toBe('/t/trust.p12');
    expect(cluster.mtlsBootstrap).toBe('127.0.0.1:22342');
  });
});
