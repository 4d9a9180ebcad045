// The injector's controller: what runs beside the webhook so that labelling a namespace is all a
// person does. Every replica serves the certificate in its Secret (and swaps in each new one) and
// keeps the caches its admissions read (admission-cache.ts); the one replica that holds the Lease
// writes: the CAs, the serving certificate, the webhook configuration's caBundle, and every labelled
// namespace's provisioning.
import { KubeApi } from '../lib/kube-api/client.js';
import { kubeConnection } from '../lib/kube-api/connection.js';
import { admissionRegistrationV1, coordinationV1, coreV1, rbacV1 } from '../lib/kube-api/resources.js';
import { createLogger, type Logger } from '../lib/log.js';
import { AdmissionCache, type AdmissionLookups } from './admission-cache.js';
import { CertificateFeed, type CertificateListener, type ServingCertificate } from './certs/feed.js';
import { CertificateReconciler } from './certs/reconciler.js';
import { IdentitySigner } from './certs/signer.js';
import type { InjectorConfig } from './config.js';
import { LeaderElection } from './provision/lease.js';
import { ownLabels, SECRETS } from './provision/names.js';
import type { ProvisioningNames } from './provision/objects.js';
import type { ProvisioningStatus } from './provision/readiness.js';
import { NamespaceProvisioner } from './provision/reconciler.js';
import { InstallationCheck } from './provision/installation-check.js';
import { resolveSettings } from './settings.js';
import { upstreamCaOf } from './provision/upstream-ca.js';

export interface Controller {
  /** This replica's name in the Lease. */
  readonly identity: string;
  /**
   * Resolves once the first serving certificate is available (delivered to listeners, written to
   * webhookCertDir) and every cache the admissions read has listed.
   */
  ready(): Promise<void>;
  /** Stops watching and writing; a leader releases the Lease so that another replica takes over at once. */
  stop(): Promise<void>;
  /** Every new serving certificate, and at once the current one: for https.Server.setSecureContext. */
  onCertificate(listener: CertificateListener): () => void;
  currentCertificate(): ServingCertificate | undefined;
  /** What a labelled namespace still lacks for a pod to start there, as the webhook sees it (from its caches). */
  provisioningStatus(namespace: string): Promise<ProvisioningStatus>;
  /** What the admissions read, from this replica's caches. */
  readonly lookups: AdmissionLookups;
  isLeader(): boolean;
}

export interface ControllerDependencies {
  /** The API server, as the injector reaches it; by default from config.kubeconfig (or in-cluster). Closed at stop(). */
  api?: KubeApi;
  log?: Logger;
}

export function provisioningNames(config: InjectorConfig): ProvisioningNames {
  return {
    installation: config.namespace,
    serviceAccount: config.serviceAccount,
    servingSecret: config.servingSecret,
    caConfigMap: config.caConfigMap,
    impersonatorRole: config.impersonatorRole,
    sidecarConfig: config.sidecarConfig,
  };
}

export function startController(config: InjectorConfig, dependencies: ControllerDependencies = {}): Controller {
  const api = dependencies.api ?? new KubeApi(kubeConnection(config.kubeconfig));
  const log = (dependencies.log ?? createLogger('injector')).child({ part: 'controller' });
  const core = coreV1(api);
  const rbac = rbacV1(api);
  const admission = admissionRegistrationV1(api);
  const names = provisioningNames(config);
  const caches = new AdmissionCache({ api, names, log });
  const labels = ownLabels(config.namespace);

  const feed = new CertificateFeed({
    api,
    core,
    namespace: config.namespace,
    secret: config.certificates === 'cert-manager' ? config.certManagerSecret : SECRETS.webhookTls,
    log,
    ...(config.webhookCertDir ? { directory: config.webhookCertDir } : {}),
  });

  let leaderWork: { certificates: CertificateReconciler; provisioner: NamespaceProvisioner; installationCheck: InstallationCheck; signer: IdentitySigner } | undefined;
  // What the sidecars verify the API server with: the CA this injector verifies it with itself.
  const upstreamCa = upstreamCaOf(api.connection, {
    onChange: () => {
      log.info({ from: upstreamCa.source }, "the cluster's CA changed: writing it into every labelled namespace");
      leaderWork?.provisioner.upstreamCaChanged();
    },
    onError: (err) => log.warn({ err: err.message, from: upstreamCa.source }, "could not read the cluster's CA"),
  });
  if (upstreamCa.current()) log.info({ from: upstreamCa.source }, "the sidecars verify the API server with the cluster's CA from here");
  else log.error({ from: upstreamCa.source }, "the cluster's CA is not known: no namespace is ready (ConfigMap key upstream-ca.crt) until it is");
  const election = new LeaderElection({
    coordination: coordinationV1(api),
    namespace: config.namespace,
    name: config.leaseName,
    ...(config.leaderIdentity ? { identity: config.leaderIdentity } : {}),
    leaseDurationMs: config.leaseDuration,
    log,
    onStartedLeading: () => {
      const provisioner = new NamespaceProvisioner({
        api,
        core,
        rbac,
        names,
        ...(config.provisionSelector ? { namespaceSelector: config.provisionSelector } : {}),
        leafValidityMs: config.certificateValidity,
        resyncMs: config.resyncInterval,
        upstreamCa: () => upstreamCa.current(),
        provisionedChanges: (listener) => caches.onProvisionedChange(listener),
        impersonation: {
          mode: config.impersonationMode,
          groups: config.impersonationGroups,
          extras: config.impersonationExtras,
          access: config.defaultAccess,
        },
        log,
      });
      const signer = new IdentitySigner({ api, log });
      const certificates = new CertificateReconciler({
        api,
        core,
        admission,
        labels,
        log,
        settings: {
          mode: config.certificates,
          namespace: config.namespace,
          webhookConfiguration: config.webhookConfiguration,
          webhookService: config.webhookService,
          webhookHosts: config.webhookHosts,
          certManagerCertificate: `${config.namespace}/${config.certManagerCertificate}`,
          leafValidityMs: config.certificateValidity,
          caValidityMs: config.caValidity,
          caPropagationMs: config.caPropagationDelay,
          caOverlapMs: config.caOverlap,
          resyncMs: config.resyncInterval,
        },
        onSidecarCas: (cas) => {
          provisioner.setCas(cas);
          signer.useCa(cas.identity.active);
        },
      });
      // The injector's own settings; a settings error is a refusal to start (injector.ts), so this cannot throw.
      const installationCheck = new InstallationCheck({
        core,
        followSecrets: (listener) => caches.followInstallationSecrets(listener),
        namespace: config.namespace,
        settings: resolveSettings({ ...config, sidecarUpstream: config.sidecarUpstream ?? api.connection.server }),
        onChange: () => provisioner.installationConfigsChanged(),
        log,
      });
      leaderWork = { certificates, provisioner, installationCheck, signer };
      certificates.start();
      signer.start();
      installationCheck.start();
    },
    onStoppedLeading: async () => {
      const work = leaderWork;
      leaderWork = undefined;
      await work?.certificates.stop();
      await work?.signer.stop();
      await work?.provisioner.stop();
      work?.installationCheck.stop();
    },
  });

  feed.start();
  caches.start();
  election.start();
  log.info({ identity: election.identity, namespace: config.namespace, certificates: config.certificates }, 'controller started');

  return {
    identity: election.identity,
    ready: async () => {
      await Promise.all([feed.ready(), caches.synced()]);
    },
    stop: async () => {
      await election.stop();
      await feed.stop();
      await caches.stop();
      upstreamCa.close();
      api.close();
    },
    onCertificate: (listener) => feed.onCertificate(listener),
    currentCertificate: () => feed.current(),
    provisioningStatus: caches.provisioning,
    lookups: caches,
    isLeader: () => election.isLeader(),
  };
}
