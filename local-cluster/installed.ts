// chaperone installed on a local node as it ships: manifests/base rendered by kubectl, the injector
// and sidecar images built without Docker from dist/ and imported into the node's containerd, the
// objects applied, and the injector's Deployment waited for. There is no scheduler: the Deployment's
// pods name the node, the one change to the manifests besides the arguments a caller adds.
// The dashboard app of the real pods (the demo's and the tests'), a real in-cluster client, is here too.
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import YAML from 'yaml';
import type { KubernetesObject, V1Container, V1Deployment } from '@kubernetes/client-node';
import { ensureArtefacts } from '../scripts/build-artefacts.js';
import { ensureInClusterClient } from './binaries.js';
import { kubectl } from './kube.js';
import type { LocalNode } from './node.js';
import { buildBinaryImage, buildDockerfileImage } from './oci.js';
import { waitFor } from './wait.js';

const MANIFESTS = path.resolve(import.meta.dirname, '../manifests');
export const INJECTOR_NAMESPACE = 'chaperone-system';
const DEPLOYMENT_READY_MS = 180_000;

export interface NodeInstallation {
  /** The Deployment as applied. */
  deployment: V1Deployment;
  sidecarImage: string;
}

async function renderBase(node: LocalNode): Promise<KubernetesObject[]> {
  const rendered = await kubectl(node.controlPlane.adminKubeconfig, ['kustomize', path.join(MANIFESTS, 'base')]);
  if (rendered.code !== 0) throw new Error(`kubectl kustomize manifests/base: ${rendered.stderr}`);
  return YAML.parseAllDocuments(rendered.stdout).map((doc) => doc.toJS() as KubernetesObject);
}

async function applyObjects(node: LocalNode, objects: KubernetesObject[], file: string): Promise<void> {
  await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  const applied = await kubectl(node.controlPlane.adminKubeconfig, ['apply', '--server-side', '-f', file]);
  if (applied.code !== 0) throw new Error(`kubectl apply manifests/base: ${applied.stderr}`);
}

async function waitForDeployment(node: LocalNode, deployment: V1Deployment): Promise<void> {
  const name = deployment.metadata!.name!;
  await waitFor(`the injector Deployment available (kubectl get pods -n ${INJECTOR_NAMESPACE} says why not)`, async () => {
    const ready = (await kubectl(node.controlPlane.adminKubeconfig, ['get', 'deployment', '-n', INJECTOR_NAMESPACE, name, '-o', 'jsonpath={.status.readyReplicas}'])).stdout;
    return Number(ready) === deployment.spec!.replicas ? true : undefined;
  }, DEPLOYMENT_READY_MS, 1000);
}

/**
 * Installs manifests/base on the node, with `injectorArgs` added to the injector's, and waits until
 * every replica is Ready. Image archives are written in `work`.
 */
export async function installOnNode(node: LocalNode, work: string, options: { injectorArgs?: string[]; log?: (line: string) => void } = {}): Promise<NodeInstallation> {
  await ensureArtefacts(options.log);
  const objects = await renderBase(node);
  const deployment = objects.find((o): o is V1Deployment => o.kind === 'Deployment')!;
  deployment.spec!.template.spec!.nodeName = node.name;
  const injector = deployment.spec!.template.spec!.containers[0]!;
  injector.args!.push(...(options.injectorArgs ?? []));
  const sidecarImage = injector.args!.find((arg) => arg.startsWith('--sidecar-image='))!.slice('--sidecar-image='.length);
  for (const [dockerfile, ref] of [['Dockerfile.injector', injector.image!], ['Dockerfile.sidecar', sidecarImage]] as const) {
    const image = await buildDockerfileImage(dockerfile, ref, path.join(work, `${path.extname(dockerfile).slice(1)}.tar`));
    await node.importImage(image.file);
  }
  await applyObjects(node, objects, path.join(work, 'base.json'));
  await waitForDeployment(node, deployment);
  return { deployment, sidecarImage };
}

/** The image of the in-cluster client (test/fixtures/in-cluster-client), never pulled. */
export const CLIENT_IMAGE = 'chaperone.local/in-cluster-client:test';
export const CLIENT_PORT = 8080;
export const APP_UID = 1000;

/** Builds the in-cluster client's image and imports it into the node. */
export async function importInClusterClient(node: LocalNode, work: string, log?: (line: string) => void): Promise<void> {
  const image = await buildBinaryImage(await ensureInClusterClient(log), 'client', CLIENT_IMAGE, path.join(work, 'client.tar'));
  await node.importImage(image.file);
}

/**
 * A dashboard's app container: the in-cluster client serving on CLIENT_PORT, as a non-root user
 * with nothing to escalate, as a dashboard's chart would run it.
 */
export function inClusterClientContainer(name: string): V1Container {
  return {
    name,
    image: CLIENT_IMAGE,
    imagePullPolicy: 'IfNotPresent',
    args: ['serve'],
    ports: [{ name: 'http', containerPort: CLIENT_PORT }],
    securityContext: { runAsNonRoot: true, runAsUser: APP_UID, runAsGroup: APP_UID, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
  };
}
