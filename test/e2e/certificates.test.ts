// The injector's own serving certificate, with lifetimes of seconds: two controller replicas serve
// it from TLS servers the API server calls as admission webhooks (one webhook per replica, so both are
// called), and it is renewed under them again and again and its CA rolled over once, while pods are
// created without pause and every HTTPS call verified with the caBundle the webhook configuration
// holds at that moment. Not one call may fail, and the two replicas must not fight over the caBundle.
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { PatchStrategy, setHeaderOptions, type V1Secret } from '@kubernetes/client-node';
import { certificateInfo, createCA, issueCertificate, splitPemCertificates } from '../../lib/pki.js';
import type { Controller } from '../../injector/controller.js';
import type { ServingCertificate } from '../../injector/certs/feed.js';
import { rotateCa } from '../../injector/rotate.js';
import { CERT_MANAGER_INJECT_ANNOTATION } from '../../injector/certs/webhook.js';
import { decodeData, describeError, encodeData } from '../../injector/provision/kube.js';
import { SECRETS } from '../../injector/provision/names.js';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, type AdminClients } from '../../local-cluster/kube.js';
import { sharedControlPlane } from '../support/shared.js';
import { createWebhookConfiguration, installInjector, readCaBundles, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface AdmissionServer {
  port: number;
  /** Admission calls answered. */
  calls: number;
  /** SHA-256 of every certificate a handshake was made with. */
  served: Set<string>;
  close(): Promise<void>;
}

/** An HTTPS admission webhook that allows everything, serving the replica's certificate and each renewal of it. */
async function startAdmissionServer(replica: Controller): Promise<AdmissionServer> {
  const first = replica.currentCertificate()!;
  const state = { calls: 0, served: new Set<string>() };
  const server: Server = createServer({ cert: first.certPem, key: first.keyPem }, (req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      state.calls++;
      const review = JSON.parse(body) as { request: { uid: string } };
      // A new connection, and so a new handshake, for every call.
      res.writeHead(200, { 'Content-Type': 'application/json', Connection: 'close' });
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } }));
    });
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    const served = socket.getCertificate();
    if (served && 'fingerprint256' in served) state.served.add(served.fingerprint256);
  });
  const unsubscribe = replica.onCertificate((certificate: ServingCertificate) => server.setSecureContext({ cert: certificate.certPem, key: certificate.keyPem }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    get calls() {
      return state.calls;
    },
    served: state.served,
    close: () =>
      new Promise<void>((resolve) => {
        unsubscribe();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** One admission-like call, as the API server makes it: a fresh TLS connection verified with this caBundle. */
function admissionCall(port: number, caBundle: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'direct' } });
    const req = request({ host: '127.0.0.1', port, path: '/mutate', method: 'POST', ca: caBundle, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const caNames = (bundle: string) => splitPemCertificates(bundle).map((pem) => certificateInfo(pem).sha256.slice(0, 12));

describe("the injector's serving certificate: renewals, a CA rollover and the caBundle (two replicas, real API server)", function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let installation: InjectorInstallation;
  let replicas: Controller[];
  let servers: AdmissionServer[] = [];
  let namespace: string;

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    installation = await installInjector(cp, clients);
    const flags = ['--webhook-hosts=127.0.0.1', '--certificate-validity=6s', '--ca-propagation-delay=2s', '--ca-overlap=4s', '--lease-duration=4s'];
    replicas = [installation.startReplica(flags), installation.startReplica(flags)];
    await Promise.all(replicas.map((replica) => replica.ready()));
    servers = await Promise.all(replicas.map(startAdmissionServer));
    await createWebhookConfiguration(installation, servers.map((server) => `https://127.0.0.1:${server.port}/mutate`));
    await waitFor('the caBundle on both webhooks', async () => (await readCaBundles(installation)).bundles.every((bundle) => bundle !== ''));
    namespace = await installation.createLabelledNamespace('admitted');
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace }).then(() => true));
  });

  after(async function () {
    await Promise.all(servers.map((server) => server.close()));
    await installation?.cleanup();
  });

  it('admits every pod and verifies every call across several renewals and one CA rollover', async function () {
    const failures: string[] = [];
    const bundles: string[][] = [];
    const initialCa = caNames((await readCaBundles(installation)).bundles[0]!);
    const end = Date.now() + 28_000;
    let rotated = false;
    let pods = 0;
    let direct = 0;
    // Beside the pods, back-to-back handshakes: a window of a few milliseconds in which a replica
    // serves a certificate the caBundle does not verify would not go unnoticed.
    const hammer = (async () => {
      while (Date.now() < end) {
        const { bundles: current } = await readCaBundles(installation);
        for (const [index, server] of servers.entries()) {
          try {
            await admissionCall(server.port, current[index]!);
            direct++;
          } catch (err) {
            failures.push(`direct call to replica ${index} at ${new Date().toISOString()}: ${(err as Error).message}`);
          }
        }
      }
    })();
    for (let i = 0; Date.now() < end; i++) {
      if (!rotated && Date.now() > end - 20_000) {
        rotated = true;
        const result = await rotateCa({ core: clients.core, namespace: installation.namespace, kind: 'webhook', propagationMs: 2000, validityMs: 3600_000 });
        assert.ok(result.started, result.message);
      }
      try {
        await clients.core.createNamespacedPod({ namespace, body: { metadata: { name: `pod-${i}` }, spec: { containers: [{ name: 'app', image: 'example/app:1' }] } } });
        pods++;
      } catch (err) {
        failures.push(`pod-${i} at ${new Date().toISOString()}: ${describeError(err)}`);
      }
      const names = caNames((await readCaBundles(installation)).bundles[0]!);
      if (bundles.at(-1)?.join() !== names.join()) bundles.push(names);
      await sleep(100);
    }
    await hammer;

    assert.deepEqual(failures, [], `${failures.length} of ${pods + failures.length} admissions and ${direct} direct calls failed`);
    assert.ok(pods > 50, `${pods} pods admitted`);
    assert.ok(direct > 500, `${direct} direct calls`);
    for (const [index, server] of servers.entries()) {
      assert.ok(server.calls > pods, `replica ${index} answered the API server (${server.calls} calls)`);
      assert.ok(server.served.size >= 5, `replica ${index} served ${server.served.size} certificates (renewals every ~4s)`);
    }
    // The caBundle went: the initial CA, both during the rollover, the new CA alone.
    const final = bundles.at(-1)!;
    assert.deepEqual(bundles[0], initialCa);
    assert.ok(bundles.some((names) => names.length === 2 && names.includes(initialCa[0]!)), `a bundle with both CAs: ${JSON.stringify(bundles)}`);
    assert.equal(final.length, 1);
    assert.notEqual(final[0], initialCa[0], 'the rollover completed');
  });

  it('settles the caBundle: two replicas never fight over it', async function () {
    const first = await readCaBundles(installation);
    const samples: string[] = [];
    for (let i = 0; i < 16; i++) {
      await sleep(500);
      samples.push((await readCaBundles(installation)).resourceVersion);
    }
    // Two renewals of the serving certificate happen meanwhile: they do not touch the caBundle.
    assert.deepEqual(new Set(samples), new Set([first.resourceVersion]), 'the resourceVersion stayed put for 8s');
    assert.equal(first.bundles[0], first.bundles[1]);
  });

  it('puts the caBundle back when someone changes it', async function () {
    const wanted = decodeData((await clients.core.readNamespacedSecret({ name: SECRETS.webhookCa, namespace: installation.namespace })).data)['bundle.crt']!;
    const stranger = Buffer.from(createCA({ commonName: 'stranger' }).certPem).toString('base64');
    await installation.admission.patchMutatingWebhookConfiguration(
      { name: installation.webhookConfiguration, body: [{ op: 'replace', path: '/webhooks/0/clientConfig/caBundle', value: stranger }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    await waitFor('the caBundle put back', async () => (await readCaBundles(installation)).bundles[0] === wanted, 10_000);
    await clients.core.createNamespacedPod({ namespace, body: { metadata: { name: 'after-repair' }, spec: { containers: [{ name: 'app', image: 'example/app:1' }] } } });
  });
});

describe("the injector's serving certificate in cert-manager mode (the test plays cert-manager)", function () {
  this.timeout(60_000);
  let clients: AdminClients;
  let installation: InjectorInstallation;
  const ca = createCA({ commonName: 'cert-manager-ca' });
  const issue = () => issueCertificate(ca, { commonName: 'chaperone-injector', usage: 'server', dnsNames: ['chaperone-injector.chaperone-system.svc'], validitySeconds: 3600 });
  const tlsSecret = (cert: { certPem: string; keyPem: string }): V1Secret => ({
    metadata: { name: 'chaperone-injector-tls' },
    type: 'kubernetes.io/tls',
    data: encodeData({ 'tls.crt': cert.certPem, 'tls.key': cert.keyPem, 'ca.crt': ca.certPem }),
  });

  before(async function () {
    this.timeout(15 * 60_000);
    const cp = await sharedControlPlane();
    clients = adminClients(cp);
    installation = await installInjector(cp, clients);
  });

  after(async function () {
    await installation?.cleanup();
  });

  it("serves the Secret cert-manager keeps, swaps in its renewals, and leaves the caBundle to cert-manager's cainjector", async function () {
    const { namespace } = installation;
    await clients.core.createNamespacedSecret({ namespace, body: tlsSecret(issue()) });
    await createWebhookConfiguration(installation, ['https://127.0.0.1:9/mutate']);
    const replica = installation.startReplica(['--certificates=cert-manager']);
    await replica.ready();
    const seen: string[] = [];
    replica.onCertificate((certificate) => seen.push(certificate.certPem));
    assert.equal(seen.length, 1, 'the current certificate at once');

    const annotation = await waitFor('the cert-manager annotation', async () => {
      const configuration = await installation.admission.readMutatingWebhookConfiguration({ name: installation.webhookConfiguration });
      return configuration.metadata?.annotations?.[CERT_MANAGER_INJECT_ANNOTATION];
    });
    assert.equal(annotation, `${namespace}/chaperone-injector`);
    assert.deepEqual((await readCaBundles(installation)).bundles, [''], 'the caBundle is not the injector\'s to set');

    const renewed = issue();
    await clients.core.replaceNamespacedSecret({ name: 'chaperone-injector-tls', namespace, body: tlsSecret(renewed) });
    await waitFor('the renewal served', () => Promise.resolve(replica.currentCertificate()?.certPem === renewed.certPem));
    assert.deepEqual(seen.at(-1), renewed.certPem);

    const secrets = (await clients.core.listNamespacedSecret({ namespace })).items.map((s) => s.metadata?.name).sort();
    assert.deepEqual(secrets, ['chaperone-identity-ca', 'chaperone-injector-tls', 'chaperone-serving-ca'], 'no CA or certificate of its own for the webhook');
  });
});
