// One admission.k8s.io/v1 AdmissionReview in, its answer out: whether to inject (selection), what
// to inject (settings, mutation), and the JSONPatch. No HTTP here; server.ts is the shell.
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.js';
import type { InjectorConfig } from './config.js';
import { refuseTokenClaims, type CsiTokenLookup } from './csi-tokens.js';
import { Denial } from './denial.js';
import { addedEphemeralContainers, holdsScopedToken, injectPod, refuseUnsafeEphemeral } from './mutate.js';
import { withInstallationConfig, type InstallationConfigs } from './installation-config.js';
import { annotationOf, INJECT_LABEL } from './names.js';
import { neverInjected } from './namespaces.js';
import { jsonPatch, patchJson, type PatchOperation } from './patch.js';
import { notProvisionedMessage, type ProvisioningStatus } from './provision/readiness.js';
import { resolveSettingsOnce, type InjectionSettings } from './settings.js';

/** What the injector reads of a namespace: its labels (is it labelled?) and annotations (what its sidecars trust). */
export interface NamespaceMetadata {
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
}

/** The labels and annotations of a namespace, undefined if there is no such namespace; a Denial thrown is the answer. */
export type NamespaceLabels = (namespace: string) => Promise<NamespaceMetadata | undefined>;

/** What a labelled namespace still lacks for a pod to start there (the controller's provisioningStatus). */
export type Provisioning = (namespace: string) => Promise<ProvisioningStatus>;

export interface ReviewContext {
  config: InjectorConfig;
  namespaceLabels: NamespaceLabels;
  /** Without it, every labelled namespace counts as provisioned. */
  provisioning?: Provisioning;
  /** What decides whether an injected pod may have claims (csi-tokens.ts); without it, none may. */
  csiTokens?: CsiTokenLookup;
  /** The installation configurations in the injector's namespace; without it, sidecars get none. */
  installationConfigs?: InstallationConfigs;
  log: Logger;
}

/** What a lookup returns; when it fails, the denial that says what chaperone could not tell (a Denial of its own passes as it is). */
async function lookup<T>(read: () => Promise<T>, cannotTell: string): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof Denial) throw err;
    throw new Denial('InternalError', `${cannotTell}: ${(err as Error).message}`);
  }
}

/** Throws the denial that says what a labelled namespace still lacks, if anything. */
async function refuseUnprovisioned(namespace: string, provisioning: Provisioning): Promise<void> {
  const status = await lookup(() => provisioning(namespace), `chaperone cannot tell whether namespace ${namespace} is provisioned`);
  if (!status.ready) throw new Denial('ServiceUnavailable', notProvisionedMessage(namespace, status));
}

interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  subResource?: string;
  namespace?: string;
  name?: string;
  operation?: string;
  dryRun?: boolean;
  object?: unknown;
  /** The pod as stored, for an UPDATE. */
  oldObject?: unknown;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; reason: string; message: string };
  warnings?: string[];
}

export interface AdmissionReviewOut {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

/** A body that is not a review at all: the server answers 400 with this message. */
export class MalformedReview extends Error {}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks the envelope; everything inside the request is checked where it is used. */
export function parseReview(body: unknown): AdmissionRequest {
  if (!isObject(body)) throw new MalformedReview('the body is not a JSON object');
  if (body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview') {
    throw new MalformedReview('the body is not an admission.k8s.io/v1 AdmissionReview');
  }
  const request = body.request;
  if (!isObject(request)) throw new MalformedReview('the AdmissionReview has no request');
  if (typeof request.uid !== 'string' || request.uid === '') throw new MalformedReview('the AdmissionReview request has no uid');
  return request as unknown as AdmissionRequest;
}

function allow(uid: string, patch?: PatchOperation[]): AdmissionResponse {
  if (!patch || patch.length === 0) return { uid, allowed: true };
  return { uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(patchJson(patch)).toString('base64') };
}

function deny(uid: string, denial: Denial): AdmissionResponse {
  return { uid, allowed: false, status: { code: denial.code, reason: denial.reason, message: denial.message } };
}

type Selection = { inject: true; namespaceAnnotations: Readonly<Record<string, string>> } | { inject: false; why: string };

/** Whether this pod in this namespace gets the sidecar. The namespace is the request's, never the object's. */
async function select(namespace: string, pod: V1Pod, ctx: ReviewContext): Promise<Selection> {
  const never = neverInjected(namespace, ctx.config.namespace);
  if (never) return { inject: false, why: never };
  const podLabel = pod.metadata?.labels?.[INJECT_LABEL];
  if (podLabel === 'disabled') return { inject: false, why: `the pod is labelled ${INJECT_LABEL}=disabled` };
  if (podLabel !== undefined && podLabel !== 'enabled') {
    throw new Denial('BadRequest', `chaperone cannot inject this pod: its label ${INJECT_LABEL}=${podLabel} is neither disabled (to opt out) nor enabled`);
  }
  const metadata = await lookup(() => ctx.namespaceLabels(namespace), `chaperone cannot tell whether namespace ${namespace} is labelled ${INJECT_LABEL}=enabled`);
  if (metadata?.labels[INJECT_LABEL] !== 'enabled') return { inject: false, why: `the namespace is not labelled ${INJECT_LABEL}=enabled` };
  return { inject: true, namespaceAnnotations: metadata.annotations };
}

type Check = (value: Record<string, unknown>, at: string) => string | undefined;

/** A list of objects, each passing the check; undefined is fine unless required. */
function listOf(value: unknown, at: string, check: Check, required = false): string | undefined {
  if (value === undefined && !required) return undefined;
  if (!Array.isArray(value)) return `${at} is not a list`;
  for (const [i, item] of value.entries()) {
    const problem = isObject(item) ? check(item, `${at}[${i}]`) : `${at}[${i}] is not an object`;
    if (problem) return problem;
  }
  return undefined;
}

const named: Check = (value, at) => (typeof value.name === 'string' ? undefined : `${at}.name is not a string`);
const mount: Check = (value, at) => named(value, at) ?? (typeof value.mountPath === 'string' ? undefined : `${at}.mountPath is not a string`);
const container: Check = (value, at) =>
  named(value, at) ?? listOf(value.volumeMounts, `${at}.volumeMounts`, mount) ?? listOf(value.volumeDevices, `${at}.volumeDevices`, named) ?? listOf(value.env, `${at}.env`, named);

/**
 * The parts of the pod the injector reads and rewrites must have the shape the API server's own
 * decoding gives them: anything else did not come from the API server, and is refused rather than
 * half understood.
 */
function podOf(object: unknown, what = 'pod'): V1Pod {
  if (!isObject(object)) throw new Denial('BadRequest', `the admission request carries no ${what}`);
  const pod = object as V1Pod;
  if (!isObject(pod.spec)) throw new Denial('BadRequest', `the ${what} has no spec`);
  const spec = pod.spec as unknown as Record<string, unknown>;
  const problem =
    listOf(spec.containers, 'spec.containers', container, true) ??
    listOf(spec.initContainers, 'spec.initContainers', container) ??
    listOf(spec.ephemeralContainers, 'spec.ephemeralContainers', container) ??
    listOf(spec.volumes, 'spec.volumes', named);
  if (problem) throw new Denial('BadRequest', `chaperone cannot read this ${what}: ${problem}`);
  return pod;
}

/**
 * kubectl debug (UPDATE of pods/ephemeralcontainers). The API server hands the webhook the pod as
 * patched, before that subresource drops every change but the new ephemeral containers: a label, a
 * renamed container or a removed volume in the patch are never stored. So none of them decides
 * anything here. Whether the pod holds the scoped token, which volumes hold it and which container is
 * the sidecar come from the stored pod (oldObject); from the patched one, only the ephemeral
 * containers it adds, the one thing the request can change.
 */
function reviewEphemeral(request: AdmissionRequest, ctx: ReviewContext): AdmissionResponse {
  const stored = podOf(request.oldObject, 'stored pod (oldObject)');
  const added = addedEphemeralContainers(stored, podOf(request.object));
  const who = { uid: request.uid, namespace: request.namespace, pod: stored.metadata?.name, added: added.map((c) => c.name) };
  if (!holdsScopedToken(stored, ctx.config.serviceAccount)) {
    ctx.log.debug(who, 'ephemeral containers in a pod without the sidecar');
    return allow(request.uid);
  }
  refuseUnsafeEphemeral(stored.spec!, added);
  ctx.log.info(who, 'ephemeral containers allowed beside the sidecar');
  return allow(request.uid);
}

/** What a review is about: only a pod's creation and kubectl debug's ephemeral containers concern the injector. */
function reviewedOperation(request: AdmissionRequest): 'create' | 'ephemeral' | undefined {
  if (request.kind?.group !== '' || request.kind.kind !== 'Pod') return undefined;
  const subResource = request.subResource ?? '';
  if (request.operation === 'CREATE' && subResource === '') return 'create';
  if (request.operation === 'UPDATE' && subResource === 'ephemeralcontainers') return 'ephemeral';
  return undefined;
}

async function decide(request: AdmissionRequest, ctx: ReviewContext): Promise<AdmissionResponse> {
  const operation = reviewedOperation(request);
  if (!operation) return allow(request.uid);
  const namespace = request.namespace;
  if (typeof namespace !== 'string' || namespace === '') throw new Denial('BadRequest', 'the admission request names no namespace');
  return operation === 'ephemeral' ? reviewEphemeral(request, ctx) : reviewCreate(request, namespace, ctx);
}

/** The settings one pod is injected with: the injector's, the namespace's and the pod's, then the installation configuration's. */
async function settingsFor(pod: V1Pod, namespace: string, namespaceAnnotations: Readonly<Record<string, string>>, ctx: ReviewContext): Promise<InjectionSettings> {
  // What the sidecar trusts comes from the namespace as the injector watches it (cluster administrators' annotations), never from the pod.
  const settings = resolveSettingsOnce(ctx.config, pod.metadata?.annotations ?? {}, { name: namespace, annotations: namespaceAnnotations });
  if (!ctx.installationConfigs) return settings;
  const namedByNamespace = namespaceAnnotations[annotationOf('sidecar-config')] !== undefined;
  return withInstallationConfig(settings, ctx.config.namespace, namedByNamespace, ctx.installationConfigs);
}

async function reviewCreate(request: AdmissionRequest, namespace: string, ctx: ReviewContext): Promise<AdmissionResponse> {
  const { uid } = request;
  const pod = podOf(request.object);
  const selection = await select(namespace, pod, ctx);
  const who = { uid, namespace, pod: pod.metadata?.name ?? `${pod.metadata?.generateName ?? ''}*`, dryRun: request.dryRun === true };
  if (!selection.inject) {
    ctx.log.debug({ ...who, why: selection.why }, 'not injecting');
    return allow(uid);
  }
  if (ctx.provisioning) await refuseUnprovisioned(namespace, ctx.provisioning);
  const settings = await settingsFor(pod, namespace, selection.namespaceAnnotations, ctx);
  const injectedPod = injectPod(pod, settings);
  await refuseTokenClaims(injectedPod.spec!, ctx.csiTokens, ctx.config.trustedCsiDrivers);
  const patch = jsonPatch(pod as unknown as Record<string, unknown>, injectedPod as unknown as Record<string, unknown>);
  ctx.log.info({ ...who, mode: settings.sidecarMode, operations: patch.length }, patch.length > 0 ? 'injected' : 'already injected');
  return allow(uid, patch);
}

/**
 * The answer as JSON: JSON.stringify's text, without scanning the patch for characters to escape
 * (base64 has none), the longest part of it.
 */
export function reviewText(review: AdmissionReviewOut): string {
  const { patch, ...response } = review.response;
  if (patch === undefined) return JSON.stringify(review);
  return `{"apiVersion":"${review.apiVersion}","kind":"${review.kind}","response":${JSON.stringify(response).slice(0, -1)},"patch":"${patch}"}}`;
}

/** The answer to one review; throws MalformedReview for a body that is not one. */
export async function answerReview(body: unknown, ctx: ReviewContext): Promise<AdmissionReviewOut> {
  const request = parseReview(body);
  let response: AdmissionResponse;
  try {
    response = await decide(request, ctx);
  } catch (err) {
    const denial = err instanceof Denial ? err : new Denial('InternalError', `chaperone failed to inject this pod: ${(err as Error).message}`);
    if (denial.reason === 'InternalError') ctx.log.error({ uid: request.uid, err: (err as Error).message }, 'admission failed');
    else ctx.log.info({ uid: request.uid, namespace: request.namespace, reason: denial.message }, 'denied');
    response = deny(request.uid, denial);
  }
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}
