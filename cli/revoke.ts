// chaperone revoke: refuses a person's client certificates at every sidecar that follows the
// installation configuration, without a restart: the entry goes into the installation Secret's
// sidecar.yaml (clientCertificateRevocations, lib/sidecar-config/revocation.ts), which the sidecars
// watch. A read-modify-write with the resourceVersion as precondition, so that no other change to
// the Secret is lost; entries for a username whose time has passed are dropped on the way.
import { ApiException, CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { parseDocument } from 'yaml';
import { INSTALLATION_FILE } from '../lib/sidecar-config/installation.js';
import { entriesInForce, serialEntry, userEntry } from '../lib/sidecar-config/revocation.js';
import { MAX_CERTIFICATE_SECONDS } from '../injector/certs/signer.js';
import { apiErrorMessage, injectorConfigFrom, loadKubeconfig, unreachable, type ClusterOptions, type InjectorOptions } from './cluster.js';

const KEY = 'clientCertificateRevocations';
const MAX_ATTEMPTS = 5;

export interface RevokeOptions extends ClusterOptions, InjectorOptions {
  serial: string[];
  user: string[];
  /** How long a username stays revoked; the longest a certificate lives when not given. */
  forSeconds?: number;
  /** A username revoked until the entry is removed. */
  forever?: boolean;
  /** The installation configuration Secret in the injector's namespace; the injector's --sidecar-config when not given. */
  sidecarConfig?: string;
}

/** The new entries, as they go into the list. */
export function revocationEntries(options: Pick<RevokeOptions, 'serial' | 'user' | 'forSeconds' | 'forever'>, now = new Date()): string[] {
  if (options.serial.length === 0 && options.user.length === 0) throw new Error('name what to revoke: --serial <hex> or --user <name> (repeatable)');
  if (options.forever && options.forSeconds !== undefined) throw new Error('--for and --forever exclude each other');
  const bad = options.serial.find((serial) => !/^[0-9a-fA-F:]+$/.test(serial));
  if (bad !== undefined) throw new Error(`--serial ${bad} is not a hexadecimal serial number (openssl x509 -noout -serial prints it)`);
  const until = options.forever ? undefined : new Date(now.getTime() + (options.forSeconds ?? MAX_CERTIFICATE_SECONDS) * 1000);
  return [...options.serial.map(serialEntry), ...options.user.map((user) => userEntry(user, until))];
}

/** sidecar.yaml with the entries added (and lapsed ones dropped), its comments and other settings kept. */
export function withRevocations(sidecarYaml: string, entries: readonly string[], now = Date.now()): string {
  const document = parseDocument(sidecarYaml);
  if (document.errors.length > 0) throw new Error(`${INSTALLATION_FILE} is not YAML: ${document.errors[0]!.message}`);
  const current: unknown = document.get(KEY);
  const existing = current === undefined ? [] : (document.toJS() as Record<string, unknown>)[KEY];
  if (!Array.isArray(existing) || existing.some((entry) => typeof entry !== 'string')) throw new Error(`${INSTALLATION_FILE}: ${KEY} is not a list of strings`);
  const kept = entriesInForce(existing as string[], now);
  document.set(KEY, [...kept, ...entries.filter((entry) => !kept.includes(entry))]);
  return document.toString();
}

export async function runRevoke(options: RevokeOptions, out: (line: string) => void = (line) => process.stdout.write(`${line}\n`)): Promise<void> {
  const entries = revocationEntries(options);
  const kubeconfig = loadKubeconfig(options);
  const injector = injectorConfigFrom(options);
  const target: InstallationSecret = { kubeconfig, core: kubeconfig.makeApiClient(CoreV1Api), namespace: injector.namespace, name: options.sidecarConfig ?? injector.sidecarConfig };
  const where = `Secret ${target.namespace}/${target.name}`;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const secret = await readInstallationSecret(target, where);
    const yaml = Buffer.from(secret.data?.[INSTALLATION_FILE] ?? '', 'base64').toString('utf8');
    const data = { ...secret.data, [INSTALLATION_FILE]: Buffer.from(withRevocations(yaml, entries)).toString('base64') };
    if (!(await replaceInstallationSecret(target, where, { ...secret, data }))) continue;
    for (const entry of entries) out(`revoked ${entry} (${where})`);
    return;
  }
  throw new Error(`${where} kept changing under us; try again`);
}

interface InstallationSecret {
  kubeconfig: KubeConfig;
  core: CoreV1Api;
  namespace: string;
  name: string;
}

const needOf = ({ name, namespace }: InstallationSecret) => `get and update on secrets/${name} in ${namespace}`;

async function readInstallationSecret(target: InstallationSecret, where: string): Promise<V1Secret> {
  const { core, name, namespace, kubeconfig } = target;
  try {
    return await core.readNamespacedSecret({ name, namespace });
  } catch (err) {
    if (!(err instanceof ApiException)) throw unreachable(kubeconfig, err);
    if (err.code === 404) {
      throw new Error(
        `${where} does not exist: the sidecars follow an installation configuration only when it existed as their pod was admitted; create it (docs/operations.md, "Revoking a person") and restart the dashboards`,
        { cause: err },
      );
    }
    throw new Error(`cannot read ${where}: ${apiErrorMessage(err, needOf(target))}`, { cause: err });
  }
}

/** Writes the Secret back; false when someone changed it meanwhile (a conflict: read it again). */
async function replaceInstallationSecret(target: InstallationSecret, where: string, body: V1Secret): Promise<boolean> {
  const { core, name, namespace, kubeconfig } = target;
  try {
    await core.replaceNamespacedSecret({ name, namespace, body });
    return true;
  } catch (err) {
    if (err instanceof ApiException && err.code === 409) return false;
    if (!(err instanceof ApiException)) throw unreachable(kubeconfig, err);
    throw new Error(`cannot update ${where}: ${apiErrorMessage(err, needOf(target))}`, { cause: err });
  }
}
