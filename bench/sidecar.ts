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
  /** The command-line arguments of a sidecar on these ports, with these flags added. */
  args(port: number, opsPort: number, flags?: string[]): string[];
  /** Starts one and waits until /readyz says it can serve. */
  start(name: string, flags?: string[], options?: Pick<StartOptions, 'cpuProfileDir' | 'cgroup'>): Promise<BenchSidecar>;
}

export async function prepareSidecars(cp: ControlPlane, clients: AdminClients, dir: string, authenticationFlags: string[]): Promise<SidecarLauncher> {
  const file = (name: string) => path.join(dir, name);
  const namespace = await createNamespace(clients, 'bench-chaperone');
  const serviceAccount = 'chaperone-impersonator';
  await createServiceAccount(clients, namespace, serviceAccount);
  const role = await ensureImpersonatorRole(clients);
  await clients.rbac.createClusterRoleBinding({
    body: {
      metadata: { name: `chaperone-impersonator-${namespace}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [serviceAccountSubject(namespace, serviceAccount)],
    },
  });
  const servingCa = createCA({ commonName: 'chaperone-bench-serving-ca' });
  const serving = issueCertificate(servingCa, { commonName: 'chaperone', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await Promise.all([
    writeFile(file('tls.crt'), serving.certPem),
    writeFile(file('tls.key'), serving.keyPem, { mode: 0o600 }),
    writeFile(file('upstream-ca.crt'), cp.ca.certPem),
    writeFile(file('token'), await mintServiceAccountToken(clients, namespace, serviceAccount, { expirationSeconds: 4 * 3600 }), { mode: 0o600 }),
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
