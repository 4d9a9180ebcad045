// chaperone kubeconfig: a short-lived client certificate from the identity CA, in a kubeconfig that
// reaches the API server through a sidecar.
import { readFile, writeFile } from 'node:fs/promises';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { issueCertificate, type CertificateAndKey } from '../lib/pki.js';

export interface PersonKubeconfig {
  user: string;
  groups: string[];
  ttlSeconds: number;
  identityCa: CertificateAndKey;
  /** The sidecar's address, as the person reaches it. */
  server: string;
  /** The CA that signed the sidecar's serving certificate. */
  servingCaPem: string;
}

const MAX_TTL_SECONDS = 7 * 24 * 3600;

/** Refuses what the API server's x509 mapping could not carry faithfully, or a lifetime that is not short. */
export function validatePerson(user: string, groups: string[], ttlSeconds: number): void {
  if (!user.trim()) throw new Error('--user must name a person');
  if (user.startsWith('system:') || groups.some((g) => g.startsWith('system:'))) {
    throw new Error('system: names belong to the cluster; the sidecar refuses them from a certificate (see --guard-allow)');
  }
  if (!(ttlSeconds > 0 && ttlSeconds <= MAX_TTL_SECONDS)) throw new Error(`--ttl must be between 1s and ${MAX_TTL_SECONDS / 3600}h`);
}

export function personKubeconfig(request: PersonKubeconfig): string {
  validatePerson(request.user, request.groups, request.ttlSeconds);
  const cert = issueCertificate(request.identityCa, {
    commonName: request.user,
    organizations: request.groups,
    usage: 'client',
    validitySeconds: request.ttlSeconds,
  });
  return kubeconfigYaml(request.server, request.servingCaPem, request.user, cert);
}

export interface KubeconfigCommandOptions {
  user: string;
  group: string[];
  ttlSeconds: number;
  server: string;
  identityCaCert: string;
  identityCaKey: string;
  servingCa: string;
  output?: string;
}

export async function runKubeconfig(options: KubeconfigCommandOptions): Promise<void> {
  const [certPem, keyPem, servingCaPem] = await Promise.all([
    readFile(options.identityCaCert, 'utf8'),
    readFile(options.identityCaKey, 'utf8'),
    readFile(options.servingCa, 'utf8'),
  ]);
  const yaml = personKubeconfig({
    user: options.user,
    groups: options.group,
    ttlSeconds: options.ttlSeconds,
    identityCa: { certPem, keyPem },
    server: options.server,
    servingCaPem,
  });
  if (options.output) {
    await writeFile(options.output, yaml, { mode: 0o600 });
    process.stderr.write(`wrote ${options.output}: ${options.user} (${options.group.join(', ') || 'no groups'}), valid for ${options.ttlSeconds}s\n`);
  } else {
    process.stdout.write(yaml);
  }
}
