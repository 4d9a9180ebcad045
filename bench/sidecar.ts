// Sidecars as an injected pod runs them, from the production bundle: a scoped service account bound
// to the shipped impersonator role, a TokenRequest token, a serving certificate of its own CA; each
// process on ports of its own.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createCA, issueCertificate } from '../lib/pki.js';
import { freePort, type ControlPlane } from '../local-cluster/control-plane.js';
import { createNamespace, createServiceAccount, mintServiceAccountToken, serviceAccountSubject, type AdminClients } from '../local-cluster/kube.js';
import { ensureImpersonatorRole } from '../local-cluster/sidecar.js';
import { startBundle, waitUntilOk, type BundleProcess, type StartOptions } from './processes.js';

export interface BenchSidecar extends BundleProcess {
  /** https://127.0.0.1:<port> */
  url: string;
  /** http://127.0.0.1:<port>: /healthz, /readyz, /metrics */
  opsUrl: string;
}

export interface SidecarLauncher {
  /** The sidecars' serving certificate and key (a peer proxy serves with them too). */
  serving: { certFile: string; keyFile: string };
  /** The command-line arguments of a sidecar on these ports, with these flags added. */
  args(port: number, opsPort: number, flags?: string[]): string[];
  /** Starts one and waits until /readyz says it can serve. */
  start(name: string, flags?: string[], options?: Pick<StartOptions, 'cpuProfileDir' | 'cgroup'>): Promise<BenchSidecar>;
}

/** A service account in a namespace of its own, bound to the sidecar's impersonator role: a token for it. */
export async function impersonatingServiceAccount(clients: AdminClients, namespacePrefix: string, name: string): Promise<string> {
  const namespace = await createNamespace(clients, namespacePrefix);
  await createServiceAccount(clients, namespace, name);
  await clients.rbac.createClusterRoleBinding({
    body: {
      metadata: { name: `${name}-${namespace}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: await ensureImpersonatorRole(clients) },
      subjects: [serviceAccountSubject(namespace, name)],
    },
  });
  return mintServiceAccountToken(clients, namespace, name, { expirationSeconds: 4 * 3600 });
}

export async function prepareSidecars(cp: ControlPlane, clients: AdminClients, dir: string, authenticationFlags: string[]): Promise<SidecarLauncher> {
  const file = (name: string) => path.join(dir, name);
  const token = await impersonatingServiceAccount(clients, 'bench-chaperone', 'chaperone-impersonator');
  const servingCa = createCA({ commonName: 'chaperone-bench-serving-ca' });
  const serving = issueCertificate(servingCa, { commonName: 'chaperone', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await Promise.all([
    writeFile(file('tls.crt'), serving.certPem),
    writeFile(file('tls.key'), serving.keyPem, { mode: 0o600 }),
    writeFile(file('upstream-ca.crt'), cp.ca.certPem),
    writeFile(file('token'), token, { mode: 0o600 }),
  ]);
  // Production defaults for everything else: audit events to standard output, log level info.
  const args = (port: number, opsPort: number, flags: string[] = []) => [
    `--listen=127.0.0.1:${port}`,
    `--ops-listen=127.0.0.1:${opsPort}`,
    `--tls-cert-file=${file('tls.crt')}`,
    `--tls-key-file=${file('tls.key')}`,
    `--upstream=${cp.url}`,
    `--upstream-ca-file=${file('upstream-ca.crt')}`,
    `--token-file=${file('token')}`,
    ...authenticationFlags,
    ...flags,
  ];
  return {
    serving: { certFile: file('tls.crt'), keyFile: file('tls.key') },
    args,
    start: async (name, flags = [], options = {}) => {
      const [port, opsPort] = [await freePort(), await freePort()];
      const proc = startBundle('sidecar', args(port, opsPort, flags), { stderrFile: file(`${name}.log`), ...options });
      const sidecar = { ...proc, url: `https://127.0.0.1:${port}`, opsUrl: `http://127.0.0.1:${opsPort}` };
      try {
        await waitUntilOk(`${sidecar.opsUrl}/readyz`, proc, `the ${name} sidecar`);
      } catch (err) {
        await proc.stop();
        throw err;
      }
      return sidecar;
    },
  };
}
