// The one person every benchmark request is made as, with each credential the sidecar accepts:
// a client certificate of the API server's own CA (for going direct), one of the sidecar's identity
// CA, an ID token from a real OpenID provider, and a token of a pam_hook-style webhook. Each method
// gives the same username and groups, so the API server authorizes the same person either way.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { createCA, issueCertificate, type CertificateAndKey } from '../lib/pki.js';
import type { ControlPlane } from '../local-cluster/control-plane.js';
import { authenticationConfigurationFor, startTestProvider, TEST_CLIENT, type TestProvider } from '../local-cluster/identity/oidc-provider.js';
import type { PamHookReady, PamHookWorkerData } from './pam-hook-worker.js';

export const PERSON = 'bench-alice';
export const GROUP = 'bench';

export interface People {
  /** A client certificate the API server itself accepts. */
  directCert: CertificateAndKey;
  /** A client certificate of the sidecar's identity CA. */
  sidecarCert: CertificateAndKey;
  oidcToken: string;
  webhookToken: string;
  /** The OpenID provider that issued oidcToken, for a peer proxy's flags. */
  oidc: { issuer: string; clientId: string; caFile: string };
  /** The sidecar flags that accept all three: identity CA, AuthenticationConfiguration, token webhook. */
  sidecarFlags: string[];
  stop(): Promise<void>;
}

/**
 * A static token of the person for the API server itself (its --token-auth-file, which the returned
 * flag names): h2load, which presents no client certificate, goes direct with it.
 */
export async function directTokenFile(dir: string): Promise<{ token: string; apiserverFlag: string }> {
  const token = randomBytes(32).toString('base64url');
  const file = path.join(dir, 'direct-tokens.csv');
  await writeFile(file, `${token},${PERSON},${PERSON},"${GROUP}"\n`, { mode: 0o600 });
  return { token, apiserverFlag: `--token-auth-file=${file}` };
}

function startPamHookWorker(data: PamHookWorkerData): Promise<{ ready: PamHookReady; stop: () => Promise<void> }> {
  const worker = new Worker(new URL('./pam-hook-worker.ts', import.meta.url), { workerData: data });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', (ready: PamHookReady) =>
      resolve({
        ready,
        stop: async () => {
          worker.postMessage('stop');
          await exited;
        },
      }),
    );
  });
}

export async function preparePeople(cp: ControlPlane, dir: string): Promise<People> {
  const file = (name: string) => path.join(dir, name);
  const identityCa = createCA({ commonName: 'chaperone-bench-identity-ca' });
  const oidcCa = createCA({ commonName: 'chaperone-bench-oidc-ca' });
  let provider: TestProvider | undefined;
  let pamHook: Awaited<ReturnType<typeof startPamHookWorker>> | undefined;
  try {
    provider = await startTestProvider(oidcCa, { [PERSON]: { claims: { groups: [GROUP] } } });
    pamHook = await startPamHookWorker({ users: { [PERSON]: { password: 'bench-password', uid: '1000', groups: [GROUP] } }, person: PERSON });
    const authenticationConfig = authenticationConfigurationFor(provider, oidcCa.certPem, { username: { claim: 'sub', prefix: '' }, groups: { claim: 'groups', prefix: '' } });
    await Promise.all([
      writeFile(file('identity-ca.crt'), identityCa.certPem),
      writeFile(file('oidc-ca.crt'), oidcCa.certPem),
      writeFile(file('authentication-config.yaml'), authenticationConfig),
      writeFile(file('token-webhook.kubeconfig'), pamHook.ready.kubeconfig, { mode: 0o600 }),
    ]);
    const person = { commonName: PERSON, organizations: [GROUP], usage: 'client' as const };
    const [started, hook] = [provider, pamHook];
    return {
      directCert: issueCertificate(cp.ca, person),
      sidecarCert: issueCertificate(identityCa, person),
      oidcToken: await provider.idToken(PERSON),
      webhookToken: pamHook.ready.token,
      oidc: { issuer: provider.issuer, clientId: TEST_CLIENT, caFile: file('oidc-ca.crt') },
      sidecarFlags: [
        `--client-ca-file=${file('identity-ca.crt')}`,
        `--authentication-config=${file('authentication-config.yaml')}`,
        `--authentication-token-webhook-config-file=${file('token-webhook.kubeconfig')}`,
      ],
      stop: async () => {
        await Promise.all([started.stop(), hook.stop()]);
      },
    };
  } catch (err) {
    await Promise.all([provider?.stop(), pamHook?.stop()]);
    throw err;
  }
}
