// The injector as an installed Deployment runs it, for a control plane without a kubelet: the
// container's own arguments and environment, under the chaperone-injector service account (so with
// exactly the installed RBAC), in this process. The test's flags (where to listen, the kubeconfig)
// come last and win.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import { loadInjectorConfig, type InjectorConfig } from '../../injector/config.js';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import { decodeData } from '../../injector/provision/kube.js';
import { SECRETS } from '../../injector/provision/names.js';
import { kubeconfigYaml } from '../../lib/kubeconfig.js';
import { createLogger } from '../../lib/log.js';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { grantInNamespace, mintServiceAccountToken, type AdminClients } from '../../local-cluster/kube.js';
import type { PodSidecar } from '../../local-cluster/provisioned.js';
import { rawRequest, type RawResponse } from '../../local-cluster/sidecar.js';

/** The injector's configuration from the Deployment's container (arguments, environment), then the test's flags, which win. */
export function injectorConfigOf(deployment: V1Deployment, flags: string[]): InjectorConfig {
  const containers = deployment.spec!.template.spec!.containers;
  if (containers.length !== 1) throw new Error(`expected one injector container, found ${containers.length}`);
  const container = containers[0]!;
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (variable.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[variable.name] = deployment.metadata!.namespace!;
    else throw new Error(`the test cannot resolve ${variable.name} of the injector's Deployment as the kubelet would`);
  }
  return loadInjectorConfig([...(container.args ?? []), ...flags], env);
}

/** Starts the Deployment's injector as its service account; `flags` should say where it listens. */
export async function startDeployedInjector(cp: ControlPlane, clients: AdminClients, deployment: V1Deployment, dir: string, flags: string[]): Promise<RunningInjector> {
  const namespace = deployment.metadata!.namespace!;
  const serviceAccount = deployment.spec!.template.spec!.serviceAccountName!;
  const token = await mintServiceAccountToken(clients, namespace, serviceAccount);
  const kubeconfigFile = path.join(dir, `${serviceAccount}.kubeconfig`);
  await writeFile(kubeconfigFile, kubeconfigYaml(cp.url, cp.ca.certPem, serviceAccount, { token }), { mode: 0o600 });
  return startInjector(injectorConfigOf(deployment, [...flags, `--kubeconfig=${kubeconfigFile}`]), createLogger('injector', 'warn'));
}

/** People as the injector's identity CA (in its namespace) signs them: a client certificate per user, for ten minutes. */
export async function identityCaPeople(clients: AdminClients, injectorNamespace: string): Promise<(user: string) => CertificateAndKey> {
  const identityCa = decodeData((await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: injectorNamespace })).data);
  return (user) => issueCertificate({ certPem: identityCa['ca.crt']!, keyPem: identityCa['ca.key']! }, { commonName: user, usage: 'client', validitySeconds: 600 });
}

/**
 * Through an injected pod's sidecar, with certificates of the injector's identity CA: alice, given
 * `view` in the pod's namespace, lists its pods (this one alone); bob, given nothing, is refused.
 * Returns alice's answer.
 */
export async function listPodsAsAliceAndBob(cp: ControlPlane, clients: AdminClients, sidecar: PodSidecar, pod: V1Pod, injectorNamespace: string): Promise<RawResponse> {
  const namespace = pod.metadata!.namespace!;
  const person = await identityCaPeople(clients, injectorNamespace);
  const listPods = (user: string) => rawRequest(`${sidecar.url}/api/v1/namespaces/${namespace}/pods`, { ca: sidecar.dashboard.caPem, cert: person(user) });
  await grantInNamespace(cp, clients, namespace, 'view', 'alice');
  const alice = await listPods('alice');
  assert.equal(alice.status, 200, alice.body);
  assert.deepEqual((JSON.parse(alice.body) as { items: V1Pod[] }).items.map((item) => item.metadata?.name), [pod.metadata!.name]);
  const bob = await listPods('bob');
  assert.equal(bob.status, 403, bob.body);
  return alice;
}
