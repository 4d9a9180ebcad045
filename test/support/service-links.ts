// The environment variables the kubelet gives every container of a pod for the Services of its
// namespace (enableServiceLinks, on unless a pod turns it off), as pkg/kubelet/envvars FromServices
// writes them: <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT, <NAME>_SERVICE_PORT_<PORT NAME>, and the
// Docker-link ones (<NAME>_PORT, <NAME>_PORT_<port>_<PROTO>, with _PROTO, _PORT and _ADDR). Services
// without a cluster IP (headless, ExternalName) give none. Anyone who may create a Service in the
// namespace (`edit`) chooses these names and values for every sidecar started after.
import type { V1Service } from '@kubernetes/client-node';

const variableName = (name: string) => name.replaceAll('-', '_').toUpperCase();

function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function serviceLinkEnv(services: readonly V1Service[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const service of services) {
    const ip = service.spec?.clusterIP ?? '';
    const ports = service.spec?.ports ?? [];
    if (ip === '' || ip === 'None' || ports.length === 0) continue;
    const prefix = variableName(service.metadata!.name!);
    env[`${prefix}_SERVICE_HOST`] = ip;
    env[`${prefix}_SERVICE_PORT`] = String(ports[0]!.port);
    for (const port of ports) if (port.name) env[`${prefix}_SERVICE_PORT_${variableName(port.name)}`] = String(port.port);
    ports.forEach((port, i) => {
      const protocol = port.protocol ?? 'TCP';
      const url = `${protocol.toLowerCase()}://${joinHostPort(ip, port.port)}`;
      if (i === 0) env[`${prefix}_PORT`] = url;
      const portPrefix = `${prefix}_PORT_${port.port}_${protocol.toUpperCase()}`;
      env[portPrefix] = url;
      env[`${portPrefix}_PROTO`] = protocol.toLowerCase();
      env[`${portPrefix}_PORT`] = String(port.port);
      env[`${portPrefix}_ADDR`] = ip;
    });
  }
  return env;
}

/**
 * A Service (name and port name) whose links would give exactly this variable, or undefined when no
 * Service can: the shapes above, with a name that is a DNS-1035 label and a port name that is an
 * IANA service name, as the API server requires.
 */
export function serviceForVariable(variable: string): { service: string; portName?: string; port?: number } | undefined {
  const label = (upper: string) => {
    const name = upper.toLowerCase().replaceAll('_', '-');
    return /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name) ? name : undefined;
  };
  const portName = (upper: string) => {
    const name = upper.toLowerCase().replaceAll('_', '-');
    return /^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(name) && !name.includes('--') ? name : undefined;
  };
  const shapes: [RegExp, (m: RegExpExecArray) => ReturnType<typeof serviceForVariable>][] = [
    [/^(.+)_SERVICE_HOST$/, (m) => (label(m[1]!) ? { service: label(m[1]!)! } : undefined)],
    [/^(.+)_SERVICE_PORT$/, (m) => (label(m[1]!) ? { service: label(m[1]!)! } : undefined)],
    [/^(.+?)_SERVICE_PORT_(.+)$/, (m) => (label(m[1]!) && portName(m[2]!) ? { service: label(m[1]!)!, portName: portName(m[2]!)! } : undefined)],
    [/^(.+)_PORT_(\d+)_(TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?$/, (m) => (label(m[1]!) ? { service: label(m[1]!)!, port: Number(m[2]) } : undefined)],
    [/^(.+)_PORT$/, (m) => (label(m[1]!) ? { service: label(m[1]!)! } : undefined)],
  ];
  for (const [shape, make] of shapes) {
    const match = shape.exec(variable);
    const found = match ? make(match) : undefined;
    if (found) return found;
  }
  return undefined;
}
