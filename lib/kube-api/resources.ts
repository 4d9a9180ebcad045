// The resources the injector reads and writes, each verb by the name client-go's and client-node's
// typed clients give it (readNamespacedSecret, replaceClusterRole...), over one KubeApi. Only the
// verbs in use are here; the object types are client-node's models, imported as types only.
import type {
  CoreV1Event,
  V1CertificateSigningRequest,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1LeaseSpec,
  V1MutatingWebhookConfiguration,
  V1Namespace,
  V1ObjectMeta,
  V1Role,
  V1RoleBinding,
  V1Secret,
  V1ServiceAccount,
} from '@kubernetes/client-node';
import type { DeleteOptions, KubeApi, ObjectList, PatchType } from './client.js';

/** A coordination.k8s.io/v1 Lease as it travels: its times are MicroTime, RFC 3339 strings with microseconds. */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
  spec?: Omit<V1LeaseSpec, 'acquireTime' | 'renewTime'> & { acquireTime?: string; renewTime?: string };
}

/** A MicroTime: 2026-01-02T03:04:05.678000Z. */
export function microTime(at = new Date()): string {
  return at.toISOString().replace(/Z$/, '000Z');
}

type Selectors = {
  labelSelector?: string;
  fieldSelector?: string;
};

const segment = (name: string) => encodeURIComponent(name);

/** The verbs of a namespaced resource under `group` (/api/v1, /apis/rbac.authorization.k8s.io/v1...). */
function namespaced<T>(api: KubeApi, group: string, resource: string) {
  const collection = (namespace: string) => `${group}/namespaces/${segment(namespace)}/${resource}`;
  const item = (namespace: string, name: string) => `${collection(namespace)}/${segment(name)}`;
  return {
    read: ({ name, namespace }: { name: string; namespace: string }) => api.read<T>(item(namespace, name)),
    list: ({ namespace, ...selectors }: { namespace: string } & Selectors) => api.list<T>(collection(namespace), selectors),
    create: ({ namespace, body }: { namespace: string; body: T }) => api.create<T>(collection(namespace), body),
    replace: ({ name, namespace, body }: { name: string; namespace: string; body: T }) => api.replace<T>(item(namespace, name), body),
    delete: ({ name, namespace, body }: { name: string; namespace: string; body?: DeleteOptions }) => api.delete(item(namespace, name), body),
  };
}

/** The verbs of a cluster-scoped resource under `group`. */
function clusterScoped<T>(api: KubeApi, group: string, resource: string) {
  const item = (name: string) => `${group}/${resource}/${segment(name)}`;
  return {
    read: ({ name }: { name: string }) => api.read<T>(item(name)),
    list: (selectors: Selectors = {}) => api.list<T>(`${group}/${resource}`, selectors),
    create: ({ body }: { body: T }) => api.create<T>(`${group}/${resource}`, body),
    replace: ({ name, body }: { name: string; body: T }) => api.replace<T>(item(name), body),
    patch: ({ name, body }: { name: string; body: unknown }, type: PatchType) => api.patch<T>(item(name), body, type),
    delete: ({ name, body }: { name: string; body?: DeleteOptions }) => api.delete(item(name), body),
  };
}

const CORE = '/api/v1';
const RBAC = '/apis/rbac.authorization.k8s.io/v1';

export function coreV1(api: KubeApi) {
  const secrets = namespaced<V1Secret>(api, CORE, 'secrets');
  const serviceAccounts = namespaced<V1ServiceAccount>(api, CORE, 'serviceaccounts');
  const configMaps = namespaced<V1ConfigMap>(api, CORE, 'configmaps');
  const events = namespaced<CoreV1Event>(api, CORE, 'events');
  return {
    listNamespace: (selectors: Selectors = {}): Promise<ObjectList<V1Namespace>> => api.list<V1Namespace>(`${CORE}/namespaces`, selectors),
    readNamespacedSecret: secrets.read,
    listNamespacedSecret: secrets.list,
    createNamespacedSecret: secrets.create,
    replaceNamespacedSecret: secrets.replace,
    deleteNamespacedSecret: secrets.delete,
    readNamespacedServiceAccount: serviceAccounts.read,
    createNamespacedServiceAccount: serviceAccounts.create,
    replaceNamespacedServiceAccount: serviceAccounts.replace,
    deleteNamespacedServiceAccount: serviceAccounts.delete,
    readNamespacedConfigMap: configMaps.read,
    createNamespacedConfigMap: configMaps.create,
    replaceNamespacedConfigMap: configMaps.replace,
    deleteNamespacedConfigMap: configMaps.delete,
    createNamespacedEvent: events.create,
  };
}
export type CoreV1 = ReturnType<typeof coreV1>;

export function rbacV1(api: KubeApi) {
  const clusterRoles = clusterScoped<V1ClusterRole>(api, RBAC, 'clusterroles');
  const clusterRoleBindings = clusterScoped<V1ClusterRoleBinding>(api, RBAC, 'clusterrolebindings');
  const roles = namespaced<V1Role>(api, RBAC, 'roles');
  const roleBindings = namespaced<V1RoleBinding>(api, RBAC, 'rolebindings');
  return {
    readClusterRole: clusterRoles.read,
    createClusterRole: clusterRoles.create,
    replaceClusterRole: clusterRoles.replace,
    deleteClusterRole: clusterRoles.delete,
    readClusterRoleBinding: clusterRoleBindings.read,
    listClusterRoleBinding: clusterRoleBindings.list,
    createClusterRoleBinding: clusterRoleBindings.create,
    deleteClusterRoleBinding: clusterRoleBindings.delete,
    readNamespacedRole: roles.read,
    createNamespacedRole: roles.create,
    replaceNamespacedRole: roles.replace,
    deleteNamespacedRole: roles.delete,
    readNamespacedRoleBinding: roleBindings.read,
    createNamespacedRoleBinding: roleBindings.create,
    deleteNamespacedRoleBinding: roleBindings.delete,
  };
}
export type RbacV1 = ReturnType<typeof rbacV1>;

export function admissionRegistrationV1(api: KubeApi) {
  const configurations = clusterScoped<V1MutatingWebhookConfiguration>(api, '/apis/admissionregistration.k8s.io/v1', 'mutatingwebhookconfigurations');
  return {
    readMutatingWebhookConfiguration: configurations.read,
    listMutatingWebhookConfiguration: configurations.list,
    patchMutatingWebhookConfiguration: configurations.patch,
  };
}
export type AdmissionRegistrationV1 = ReturnType<typeof admissionRegistrationV1>;

export function coordinationV1(api: KubeApi) {
  const leases = namespaced<Lease>(api, '/apis/coordination.k8s.io/v1', 'leases');
  return {
    readNamespacedLease: leases.read,
    createNamespacedLease: leases.create,
    replaceNamespacedLease: leases.replace,
  };
}
export type CoordinationV1 = ReturnType<typeof coordinationV1>;

export function certificatesV1(api: KubeApi) {
  const group = '/apis/certificates.k8s.io/v1/certificatesigningrequests';
  return {
    listCertificateSigningRequest: (selectors: Selectors = {}) => api.list<V1CertificateSigningRequest>(group, selectors),
    replaceCertificateSigningRequestStatus: ({ name, body }: { name: string; body: V1CertificateSigningRequest }) => api.replace(`${group}/${segment(name)}/status`, body),
  };
}
export type CertificatesV1 = ReturnType<typeof certificatesV1>;
