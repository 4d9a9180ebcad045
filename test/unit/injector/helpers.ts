// What the injector's unit tests, the golden files and their script share: a configuration, a
// review of one pod through the real answerReview, and the patch applied by an independent
// implementation of RFC 6902 (fast-json-patch).
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import jsonpatch from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { Logger } from '../../../lib/log.js';
import { createCA, issueCertificate } from '../../../lib/pki.js';
import { startInjector } from '../../../injector/injector.js';
import type { Controller } from '../../../injector/controller.js';
import type { ProvisioningStatus } from '../../../injector/provision/readiness.js';
import { loadInjectorConfig, type InjectorConfig } from '../../../injector/config.js';
import { answerReview, type AdmissionReviewOut, type NamespaceLabels, type NamespaceMetadata } from '../../../injector/review.js';
import type { PatchOperation } from '../../../injector/patch.js';

export const LABELLED_NAMESPACE = 'team-a';

/** Where the tests' injector pins its sidecars, as an injector in a cluster would its own API server. */
export const TEST_SIDECAR_UPSTREAM = 'https://10.96.0.1:443';

export function testConfig(argv: string[] = []): InjectorConfig {
  return loadInjectorConfig(['--tls-cert-file=/unused/tls.crt', '--tls-key-file=/unused/tls.key', `--sidecar-upstream=${TEST_SIDECAR_UPSTREAM}`, ...argv], {});
}

/**
 * A controller without an API server: no certificate of its own, every namespace provisioned unless
 * told otherwise, the namespaces of testNamespaces, no installation configuration, and no CSIDriver
 * it could read.
 */
export function fakeController(provisioning: (namespace: string) => Promise<ProvisioningStatus> = () => Promise.resolve({ ready: true, missing: [] })): Controller {
  return {
    identity: 'fake',
    ready: () => Promise.resolve(),
    stop: () => Promise.resolve(),
    onCertificate: () => () => undefined,
    currentCertificate: () => undefined,
    provisioningStatus: provisioning,
    lookups: {
      namespaceLabels: testNamespaces,
      provisioning,
      installationConfigs: () => Promise.resolve(undefined),
      csiTokens: () => Promise.reject(new Error('the fake controller has no CSIDrivers')),
    },
    isLeader: () => false,
  };
}

/** team-a is labelled for injection (with these annotations); plain exists without the label; anything else does not exist. */
export function namespacesWith(annotations: Record<string, string>): NamespaceLabels {
  const namespaces: Record<string, NamespaceMetadata> = {
    [LABELLED_NAMESPACE]: { labels: { 'chaperone.dev/inject': 'enabled' }, annotations },
    plain: { labels: {}, annotations: {} },
  };
  return (name) => Promise.resolve(namespaces[name]);
}

/** team-a is labelled for injection; plain exists without the label; anything else does not exist. */
export const testNamespaces: NamespaceLabels = namespacesWith({});

export const silentLog: Logger = pino({ enabled: false });

export interface ReviewInput {
  object?: unknown;
  /** The pod as stored, for an UPDATE. */
  oldObject?: unknown;
  namespace?: string;
  operation?: string;
  kind?: { group: string; version: string; kind: string };
  subResource?: string;
  dryRun?: boolean;
  uid?: string;
}

export function admissionReview(input: ReviewInput): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: input.uid ?? randomUUID(),
      kind: input.kind ?? { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      ...(input.subResource ? { subResource: input.subResource } : {}),
      namespace: input.namespace ?? LABELLED_NAMESPACE,
      operation: input.operation ?? 'CREATE',
      userInfo: { username: 'alice' },
      object: input.object,
      ...(input.oldObject !== undefined ? { oldObject: input.oldObject } : {}),
      dryRun: input.dryRun ?? false,
    },
  };
}

export function review(input: ReviewInput, config: InjectorConfig = testConfig(), namespaceLabels = testNamespaces): Promise<AdmissionReviewOut> {
  return answerReview(admissionReview(input), { config, namespaceLabels, log: silentLog });
}

export function decodePatch(out: AdmissionReviewOut): PatchOperation[] {
  const { patch, patchType } = out.response;
  if (patch === undefined) return [];
  if (patchType !== 'JSONPatch') throw new Error(`patchType is ${patchType}`);
  return JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as PatchOperation[];
}

/** Applies the patch as the API server would, refusing an invalid one, without touching the input. */
export function applyPatch(pod: V1Pod, patch: PatchOperation[]): V1Pod {
  return jsonpatch.applyPatch(jsonpatch.deepClone(pod) as V1Pod, patch as jsonpatch.Operation[], true, false).newDocument;
}

/** Reviews a pod in team-a and returns the injected pod; throws if it was denied. */
export async function inject(pod: V1Pod, config?: InjectorConfig): Promise<{ pod: V1Pod; patch: PatchOperation[] }> {
  const out = await review({ object: pod }, config);
  if (!out.response.allowed) throw new Error(`denied: ${out.response.status?.message}`);
  const patch = decodePatch(out);
  return { pod: applyPatch(pod, patch), patch };
}

export interface TestInjector {
  /** https://127.0.0.1:<port> */
  url: string;
  port: number;
  /** The CA of its serving certificate, for clients and for a webhook configuration's caBundle. */
  caPem: string;
  stop(): Promise<void>;
}

/**
 * The injector on a free port of 127.0.0.1, with a serving certificate from a CA of its own. With
 * controller 'own' it starts its own controller (argv must then reach an API server).
 */
export async function startTestInjector(namespaceLabels: NamespaceLabels, argv: string[] = [], controller: Controller | 'own' = fakeController()): Promise<TestInjector> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-injector-'));
  const ca = createCA({ commonName: 'chaperone-test-injector-ca' });
  const serving = issueCertificate(ca, { commonName: 'chaperone-injector', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await writeFile(path.join(dir, 'tls.crt'), serving.certPem);
  await writeFile(path.join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
  // No API server of its own to pin the sidecars to, unless argv names one (its --kubeconfig).
  const upstream = argv.some((arg) => arg.startsWith('--kubeconfig')) ? [] : [`--sidecar-upstream=${TEST_SIDECAR_UPSTREAM}`];
  const config = loadInjectorConfig(['--listen=127.0.0.1:0', `--tls-cert-file=${dir}/tls.crt`, `--tls-key-file=${dir}/tls.key`, ...upstream, ...argv], {});
  const injector = await startInjector(config, silentLog, { namespaceLabels, ...(controller === 'own' ? {} : { controller }) });
  return {
    url: `https://127.0.0.1:${injector.port}`,
    port: injector.port,
    caPem: ca.certPem,
    stop: async () => {
      await injector.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
