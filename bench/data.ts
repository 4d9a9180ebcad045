// What the requests read: config maps in namespaces of their own, which the benchmark's person may
// view (the `view` role, as a dashboard user would have it).
import type { ControlPlane } from '../local-cluster/control-plane.js';
import { createNamespace, grantInNamespace, type AdminClients } from '../local-cluster/kube.js';
import { PERSON } from './people.js';

export interface DataSizes {
  /** Objects in the list read whole. */
  list: number;
  /** Objects in the list read in pages, and the page size. */
  paged: number;
  pageSize: number;
}

export interface BenchData {
  /** The path of one small object. */
  smallObject: string;
  /** Lists every object of a namespace in one answer. */
  list: string;
  /** The first page of a list read in pages. */
  pagedList: string;
  /** A namespace with one config map, `watched`, for the watch benchmark. */
  watchNamespace: string;
  sizes: DataSizes;
}

const LABEL = 'chaperone.dev/bench';
const CONCURRENT_CREATES = 32;

function configMap(name: string, index: number) {
  // About 300 bytes each as JSON, as a small config map would be.
  return { metadata: { name, labels: { [LABEL]: 'item' } }, data: { index: String(index), 'settings.yaml': `replicas: 2\nlogLevel: info\nfeature: item-${index}\n` } };
}

async function fill(clients: AdminClients, namespace: string, count: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      await clients.core.createNamespacedConfigMap({ namespace, body: configMap(`item-${String(i).padStart(5, '0')}`, i) });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT_CREATES }, worker));
}

async function viewableNamespace(cp: ControlPlane, clients: AdminClients, prefix: string): Promise<string> {
  const namespace = await createNamespace(clients, prefix);
  await grantInNamespace(cp, clients, namespace, 'view', PERSON);
  return namespace;
}

/** The path of one small object, in a namespace of its own: all the start-up section reads, without the lists' thousands of objects. */
export async function prepareSmallObject(cp: ControlPlane, clients: AdminClients): Promise<string> {
  const namespace = await viewableNamespace(cp, clients, 'bench-get');
  await clients.core.createNamespacedConfigMap({ namespace, body: configMap('small', 0) });
  return `/api/v1/namespaces/${namespace}/configmaps/small`;
}

/**
 * Namespaces, objects and grants, besides the small object (from prepareSmallObject); the lists
 * select by label, so the namespace's own kube-root-ca.crt is not among them.
 */
export async function prepareData(cp: ControlPlane, clients: AdminClients, sizes: DataSizes, smallObject: Promise<string>, log: (line: string) => void): Promise<BenchData> {
  const [list, paged, watch] = await Promise.all(['bench-list', 'bench-paged', 'bench-watch'].map((prefix) => viewableNamespace(cp, clients, prefix)));
  await clients.core.createNamespacedConfigMap({ namespace: watch!, body: { metadata: { name: 'watched' }, data: { seq: '0' } } });
  const started = Date.now();
  await Promise.all([fill(clients, list!, sizes.list), fill(clients, paged!, sizes.paged)]);
  log(`created ${sizes.list + sizes.paged} config maps in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  const selector = `labelSelector=${encodeURIComponent(`${LABEL}=item`)}`;
  return {
    smallObject: await smallObject,
    list: `/api/v1/namespaces/${list}/configmaps?${selector}`,
    pagedList: `/api/v1/namespaces/${paged}/configmaps?${selector}&limit=${sizes.pageSize}`,
    watchNamespace: watch!,
    sizes,
  };
}
