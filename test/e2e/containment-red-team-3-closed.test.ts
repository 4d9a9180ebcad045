// Red team 3's open route, closed (issue 17's class "the order of mutating webhooks and
// reinvocation"): a cluster runs, beside chaperone's injector, a mutating webhook of its own that
// writes into every container of a pod what the pod's author chooses (environment variables and
// mounts named by the pod's annotations, as PodPreset-like injectors do), after the injector and with
// reinvocationPolicy IfNeeded, so that it has the last word. Before the fix, a namespace `edit` user
// gave the stored sidecar CHAPERONE_OIDC_* variables for an issuer of her own (the injector passes no
// such flags) and then acted, through it, as a user bound to cluster-admin; or laid a file of hers
// over the identity CA bundle. The policy's sidecar-as-injected rule now refuses a chaperone container
// that is not stored as the injector wrote it; the API server's audit log shows nothing ran.
import assert from 'node:assert/strict';
import { createCA, issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { injectedBaselineNamespace } from '../support/containment.js';
import { bindClusterRoleInNamespace, readAuditEvents, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { rawRequest, type RawResponse } from '../../local-cluster/sidecar.js';
import { ENV_ANNOTATION_PREFIX, MOUNT_ANNOTATION_PREFIX, startPresetWebhook, type PresetWebhook } from '../support/preset-webhook.js';
import { withClusterLikeControlPlane, withInjector } from '../support/fixtures.js';

const EDIT = 'redteam3-closed-edit';
const ROOT = 'root-admin';

describe('containment red team 3, closed: a later mutating webhook cannot hand the pod author the sidecar’s configuration', function () {
  this.timeout(120_000);
  const { cp, clients } = withClusterLikeControlPlane();
  const { installation } = withInjector({ cp, clients });
  let preset: PresetWebhook;
  let ns = '';
  let edit: CertificateAndKey;

  before(async function () {
    this.timeout(15 * 60_000);
    ns = await injectedBaselineNamespace(installation, clients, 'redteam3-closed');
    // The cluster's own webhook, installed by its administrators, after chaperone's (names sort so).
    preset = await startPresetWebhook(installation.admission, installation.runLabel, 'IfNeeded');
    await bindClusterRoleInNamespace(clients, ns, 'edit', [userSubject(EDIT)]);
    await clients.rbac.createClusterRoleBinding({ body: { metadata: { name: 'redteam3-closed-root' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' }, subjects: [userSubject(ROOT)] } });
    await waitForCanI(cp, EDIT, ['create', 'pods', '-n', ns]);
    edit = issueCertificate(cp.ca, { commonName: EDIT, usage: 'client', validitySeconds: 3600 });
  });

  after(async function () {
    await preset?.stop();
  });

  const createAsEdit = (path: string, body: object): Promise<RawResponse> =>
    rawRequest(`${cp.url}/api/v1/namespaces/${ns}/${path}`, { method: 'POST', ca: cp.ca.certPem, cert: edit, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  async function assertRefused(created: RawResponse, names: RegExp): Promise<void> {
    assert.equal(created.status, 403, created.body);
    const message = (JSON.parse(created.body) as { message: string }).message;
    assert.match(message, /chaperone rule sidecar-as-injected: the chaperone container must be stored as the injector wrote it, but it has /);
    assert.match(message, names);
    const ran = (await readAuditEvents(cp)).filter((e) => e.stage === 'ResponseComplete' && e.impersonatedUser?.username === ROOT);
    assert.deepEqual(ran, [], 'nothing ran as the cluster admin');
  }

  it('an `edit` user cannot give the sidecar CHAPERONE_* variables (an OIDC issuer of her own) through another webhook’s annotations', async function () {
    const annotations = {
      [`${ENV_ANNOTATION_PREFIX}CHAPERONE_OIDC_ISSUER_URL`]: 'https://issuer.mallory.example',
      [`${ENV_ANNOTATION_PREFIX}CHAPERONE_OIDC_CLIENT_ID`]: 'mallory',
      [`${ENV_ANNOTATION_PREFIX}CHAPERONE_OIDC_USERNAME_PREFIX`]: '-',
    };
    const created = await createAsEdit('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'preset', annotations }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } });
    await assertRefused(created, /variable CHAPERONE_OIDC_CLIENT_ID, variable CHAPERONE_OIDC_ISSUER_URL, variable CHAPERONE_OIDC_USERNAME_PREFIX/);
  });

  it('… nor lay a file of her own over the identity CA bundle the sidecar trusts (a subPath mount of her ConfigMap, added to every container)', async function () {
    const hers = createCA({ commonName: 'her-ca' });
    await createAsEdit('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'hers' }, data: { 'ca.crt': hers.certPem } });
    const annotations = { [`${MOUNT_ANNOTATION_PREFIX}hers`]: '/var/run/secrets/chaperone/identity/ca.crt#ca.crt' };
    const created = await createAsEdit('pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'shadow', annotations },
      spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }], volumes: [{ name: 'hers', configMap: { name: 'hers' } }] },
    });
    await assertRefused(created, /a mount of hers at \/var\/run\/secrets\/chaperone\/identity\/ca\.crt/);
  });

  it('a pod the other webhook leaves alone is injected and admitted as before', async function () {
    const created = await createAsEdit('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'plain' }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } });
    assert.equal(created.status, 201, created.body);
    assert.equal((JSON.parse(created.body) as { spec: { serviceAccountName: string } }).spec.serviceAccountName, 'chaperone-impersonator');
  });
});
