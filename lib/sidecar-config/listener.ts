// The listener an installation configuration gives every injected sidecar for tools outside the pod
// (docs/listeners.md): extraListen, a port on every address of the pod, and extraListenServices, the
// Services of the pod's namespace it is reached through, whose names the serving certificate carries.
import { parseHostPort } from '../config.js';

/** The ports the injector gives the sidecar's own listener (loopback, for the dashboard) and its ops listener. */
export const INJECTED_PORTS = { proxy: 6443, ops: 9901 } as const;
const RESERVED_PORTS: readonly number[] = Object.values(INJECTED_PORTS);

/** A Service name: a DNS-1035 label. */
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

export interface ListenerOptions {
  extraListen?: string | undefined;
  extraListenServices: readonly string[];
}

/** What is wrong with the listener an installation configuration sets (empty: nothing). */
export function installationListenerProblems(config: ListenerOptions): string[] {
  return [...addressProblems(config.extraListen), ...serviceNameProblems(config.extraListenServices), ...pairingProblems(config)];
}

function addressProblems(extraListen: string | undefined): string[] {
  const address = extraListen === undefined ? undefined : parseHostPort(extraListen);
  if (!address) return [];
  const problems: string[] = [];
  if (address.host !== '') {
    problems.push(`extraListen: ${JSON.stringify(extraListen)} names an address: an installation configuration gives every pod the same value, so it is :<port> (every address of the pod)`);
  }
  if (RESERVED_PORTS.includes(address.port)) problems.push(`extraListen: port ${address.port} is the sidecar's own (${RESERVED_PORTS.join(' and ')} are taken): choose another`);
  return problems;
}

function serviceNameProblems(services: readonly string[]): string[] {
  return services
    .filter((name) => !SERVICE_NAME.test(name))
    .map((name) => `extraListenServices: ${JSON.stringify(name)} is not a Service name (lower-case letters, digits and -, starting with a letter, at most 63 characters): the certificate names <service>.<namespace>.svc`);
}

function pairingProblems(config: ListenerOptions): string[] {
  if (config.extraListen !== undefined && config.extraListenServices.length === 0) {
    return ['extraListen: set extraListenServices too: the Services clients reach the listener through, whose names its certificate carries'];
  }
  if (config.extraListen === undefined && config.extraListenServices.length > 0) return ['extraListenServices: set extraListen too: the port the Services reach'];
  return [];
}

/** The names the serving certificate carries for these Services of the namespace. */
export function serviceDnsNames(services: readonly string[], namespace: string): string[] {
  // Each once: a certificate with a name twice would never match the names wanted, and be re-issued at every pass.
  return [...new Set(services)].flatMap((service) => [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`]);
}

/** The port of an extraListen value. */
export function listenerPort(extraListen: string): number {
  const address = parseHostPort(extraListen);
  if (!address) throw new Error(`not a listen address: ${extraListen}`);
  return address.port;
}
