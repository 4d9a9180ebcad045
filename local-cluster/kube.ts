// What tests do with the control plane as its admin: namespaces, service accounts, RBAC, tokens,
// the audit log, and kubectl.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type RbacV1Subject,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { KubeApi } from '../lib/kube-api/client.js';
import { kubeconfigConnection } from '../lib/kube-api/connection.js';
import { ensureKubectl } from './binaries.js';
import type { ControlPlane } from './control-plane.js';

export interface AdminClients {
  kubeconfig: KubeConfig;
  /** The injector's own client (lib/kube-api), as the admin: for what takes one. */
  api: KubeApi;
  core: CoreV1Api;
  rbac: RbacAuthorizationV1Api;
  authentication: AuthenticationV1Api;
  authorization: AuthorizationV1Api;
}

export function adminClients(cp: ControlPlane): AdminClients {
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromFile(cp.adminKubeconfig);
  return {
    kubeconfig,
    api: new KubeApi(kubeconfigConnection(cp.adminKubeconfig)),
    core: kubeconfig.makeApiClient(CoreV1Api),
    rbac: kubeconfig.makeApiClient(RbacAuthorizationV1Api),
    authentication: kubeconfig.makeApiClient(AuthenticationV1Api),
    authorization: kubeconfig.makeApiClient(AuthorizationV1Api),
  };
}

/** A fresh namespace per test: tests share one control plane and must not see each other. */
export async function createNamespace(clients: AdminClients, prefix = 'test', labels: Record<string, string> = {}): Promise<string> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  await clients.core.createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

export async function createServiceAccount(clients: AdminClients, namespace: string, name: string): Promise<void> {
  await clients.core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
}

export function userSubject(name: string): RbacV1Subject {
  return { kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name };
}

export function groupSubject(name: string): RbacV1Subject {
  return { kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name };
}

export function serviceAccountSubject(namespace: string, name: string): RbacV1Subject {
  return { kind: 'ServiceAccount', namespace, name };
}

/** Binds a ClusterRole within one namespace (a RoleBinding). */
export async function bindClusterRoleInNamespace(clients: AdminClients, namespace: string, clusterRole: string, subjects: RbacV1Subject[]): Promise<string> {
  const name = `${clusterRole.replace(/[^a-z0-9-]/g, '-')}-${randomBytes(3).toString('hex')}`;
  await clients.rbac.createNamespacedRoleBinding({
    namespace,
    body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole }, subjects },
  });
  return name;
}

/** A ClusterRole with the given rules and a ClusterRoleBinding of it; returns both names (they are equal). */
export async function grantClusterWide(clients: AdminClients, prefix: string, rules: V1PolicyRule[], subjects: RbacV1Subject[]): Promise<string> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  await clients.rbac.createClusterRole({ body: { metadata: { name }, rules } });
  await clients.rbac.createClusterRoleBinding({
    body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name }, subjects },
  });
  return name;
}

export async function revokeClusterWide(clients: AdminClients, name: string): Promise<void> {
  await clients.rbac.deleteClusterRoleBinding({ name });
  await clients.rbac.deleteClusterRole({ name });
}

export interface TokenOptions {
  audiences?: string[];
  expirationSeconds?: number;
}

/** TokenRequest, as the kubelet does for a projected service-account token. */
export async function mintServiceAccountToken(clients: AdminClients, namespace: string, serviceAccount: string, options: TokenOptions = {}): Promise<string> {
  const response = await clients.core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: { spec: { audiences: options.audiences ?? [], expirationSeconds: options.expirationSeconds ?? 3600 } },
  });
  const token = response.status?.token;
  if (!token) throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
  return token;
}

/**
 * RBAC changes reach the API server's authorizer through an informer, a moment after the write.
 * Waits until `kubectl auth can-i` (asked as the admin, impersonating) gives the wanted answer.
 */
export async function waitForCanI(cp: ControlPlane, asUser: string, args: string[], want: 'yes' | 'no' = 'yes', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', ...args, '--as', asUser]);
    if (result.stdout.trim() === want) return;
    if (Date.now() > deadline) throw new Error(`kubectl auth can-i ${args.join(' ')} --as ${asUser} still says ${result.stdout.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Binds view, edit or admin to a person in a namespace and waits until the API server's authorizer
 * has seen it (every one of those roles lets them list config maps).
 */
export async function grantInNamespace(cp: ControlPlane, clients: AdminClients, namespace: string, clusterRole: 'view' | 'edit' | 'admin', user: string): Promise<string> {
  const binding = await bindClusterRoleInNamespace(clients, namespace, clusterRole, [userSubject(user)]);
  await waitForCanI(cp, user, ['list', 'configmaps', '-n', namespace]);
  return binding;
}

// ---- the API server's audit log ----

export interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  impersonatedUser?: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string; apiVersion?: string };
  responseStatus?: { code?: number; reason?: string; message?: string };
  sourceIPs?: string[];
  userAgent?: string;
  annotations?: Record<string, string>;
}

export async function readAuditEvents(cp: ControlPlane): Promise<AuditEvent[]> {
  let text: string;
  try {
    text = await readFile(cp.auditLog, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as AuditEvent);
}

/**
 * Waits until the audit log holds events matching the predicate. The API server writes an event
 * once the response is complete, which can be a moment after the client saw the response.
 */
export async function waitForAuditEvents(cp: ControlPlane, predicate: (event: AuditEvent) => boolean, timeoutMs = 5000): Promise<AuditEvent[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await readAuditEvents(cp)).filter(predicate);
    if (found.length > 0 || Date.now() > deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function auditEventsFor(cp: ControlPlane, auditID: string, timeoutMs?: number): Promise<AuditEvent[]> {
  return waitForAuditEvents(cp, (event) => event.auditID === auditID, timeoutMs);
}

// ---- kubectl ----

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

let kubectlBinary: Promise<string> | undefined;

export async function kubectl(kubeconfigPath: string, args: string[], options: { timeoutMs?: number } = {}): Promise<CommandResult> {
  kubectlBinary ??= ensureKubectl();
  const binary = await kubectlBinary;
  return new Promise((resolve) => {
    execFile(
      binary,
      ['--kubeconfig', kubeconfigPath, ...args],
      { timeout: options.timeoutMs ?? 30_000, env: { ...process.env, KUBECONFIG: kubeconfigPath } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
