// The leader's certificate work, run whenever something it keeps changes or a deadline comes: the
// three CAs (webhook, identity, serving) advanced through their rotations, the injector's serving
// certificate renewed, the webhook configuration's caBundle kept equal to the webhook CA's bundle.
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import type { KubeApi } from '../../lib/kube-api/client.js';
import type { AdmissionRegistrationV1, CoreV1 } from '../../lib/kube-api/resources.js';
import type { Logger } from '../../lib/log.js';
import { injectorMetrics } from '../metrics.js';
import { describeError, listWatch, type Watching } from '../provision/kube.js';
import { CA_COMMON_NAME, CA_SECRET, SECRETS, type CaKind } from '../provision/names.js';
import { advanceCaSet, newCaSet, nextCaDeadline, trustBundle, type CaPolicy, type CaSet } from './ca-set.js';
import { updateCaSecret } from './ca-secret.js';
import { readSecret, reconcileCaBundle, reconcileCertManagerAnnotation, webhookLeafSpec, writeLeafSecret } from './webhook.js';

export type CertificateMode = 'self-managed' | 'cert-manager';

export interface CertificateSettings {
  mode: CertificateMode;
  namespace: string;
  webhookConfiguration: string;
  webhookService: string;
  webhookHosts: readonly string[];
  /** cert-manager mode: `<namespace>/<Certificate>` for cert-manager.io/inject-ca-from. */
  certManagerCertificate: string;
  leafValidityMs: number;
  caValidityMs: number;
  caPropagationMs: number;
  caOverlapMs: number;
  resyncMs: number;
}

export interface SidecarCas {
  identity: CaSet;
  serving: CaSet;
}

export interface CertificateReconcilerOptions {
  api: KubeApi;
  core: CoreV1;
  admission: AdmissionRegistrationV1;
  settings: CertificateSettings;
  labels: Record<string, string>;
  log: Logger;
  /** Called after every pass in which the identity or serving CA set changed (and after the first). */
  onSidecarCas: (cas: SidecarCas) => void;
}

export function caPolicy(kind: CaKind, settings: Pick<CertificateSettings, 'caValidityMs' | 'caPropagationMs' | 'caOverlapMs'>): CaPolicy {
  return { commonName: CA_COMMON_NAME[kind], validityMs: settings.caValidityMs, propagationMs: settings.caPropagationMs, overlapMs: settings.caOverlapMs };
}

const MAX_RETRY_MS = 30_000;

export class CertificateReconciler {
  private readonly watches: Watching[] = [];
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private sidecarKey = '';
  private missingWarned = false;

  constructor(private readonly options: CertificateReconcilerOptions) {}

  private get kinds(): CaKind[] {
    return this.options.settings.mode === 'self-managed' ? ['webhook', 'identity', 'serving'] : ['identity', 'serving'];
  }

  start(): void {
    const { api, core, admission, settings, log } = this.options;
    injectorMetrics.leading(true);
    const namespace = settings.namespace;
    const secrets = [...this.kinds.map((kind) => CA_SECRET[kind]), ...(settings.mode === 'self-managed' ? [SECRETS.webhookTls] : [])];
    for (const name of secrets) {
      const fieldSelector = `metadata.name=${name}`;
      this.watches.push(
        listWatch<V1Secret>({
          api,
          path: `/api/v1/namespaces/${namespace}/secrets`,
          fieldSelector,
          list: () => core.listNamespacedSecret({ namespace, fieldSelector }),
          onList: () => this.trigger(),
          onEvent: () => this.trigger(),
          log,
          what: `Secret ${namespace}/${name}`,
        }),
      );
    }
    const fieldSelector = `metadata.name=${settings.webhookConfiguration}`;
    this.watches.push(
      listWatch<V1MutatingWebhookConfiguration>({
        api,
        path: '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
        fieldSelector,
        list: () => admission.listMutatingWebhookConfiguration({ fieldSelector }),
        onList: () => this.trigger(),
        onEvent: () => this.trigger(),
        log,
        what: `MutatingWebhookConfiguration ${settings.webhookConfiguration}`,
      }),
    );
    this.trigger();
  }

  /** Runs a pass now, or right after the one under way. */
  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.running = this.pass().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.trigger();
      }
    });
  }

  private schedule(at: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    // A little after the deadline, so that the pass then sees it as past.
    const delay = Math.max(0, Math.min(at - Date.now() + 50, this.options.settings.resyncMs));
    this.timer = setTimeout(() => this.trigger(), delay);
  }

  private async pass(): Promise<void> {
    try {
      const deadline = await this.reconcile(new Date());
      this.failures = 0;
      this.schedule(deadline);
    } catch (err) {
      this.failures++;
      injectorMetrics.certificateErrors.inc();
      const retryMs = Math.min(MAX_RETRY_MS, 500 * 2 ** Math.min(this.failures, 8));
      this.options.log.warn({ err: describeError(err), retryMs }, 'certificate reconciliation failed');
      this.schedule(Date.now() + retryMs);
    }
  }

  private async reconcile(now: Date): Promise<number> {
    const { core, admission, settings, labels, log } = this.options;
    const cas: Partial<Record<CaKind, CaSet>> = {};
    const deadlines: number[] = [];
    for (const kind of this.kinds) {
      const policy = caPolicy(kind, settings);
      const update = await updateCaSecret({ core, namespace: settings.namespace, name: CA_SECRET[kind], labels }, (current) =>
        current ? advanceCaSet(current, now, policy) : { set: newCaSet(now, policy), events: ['created'] },
      );
      for (const event of update.events) log.info({ ca: kind, secret: `${settings.namespace}/${CA_SECRET[kind]}` }, `${kind} CA: ${event}`);
      cas[kind] = update.set;
      deadlines.push(nextCaDeadline(update.set).getTime());
    }
    injectorMetrics.cas(cas);
    if (settings.mode === 'self-managed') {
      const webhookCas = cas.webhook!;
      const ref = { core, namespace: settings.namespace, name: SECRETS.webhookTls, labels };
      const spec = webhookLeafSpec({ namespace: settings.namespace, service: settings.webhookService, hosts: settings.webhookHosts, validityMs: settings.leafValidityMs });
      const leaf = await writeLeafSecret(ref, await readSecret(core, ref.namespace, ref.name), webhookCas, spec, now);
      if (leaf.issued) log.info({ secret: `${ref.namespace}/${ref.name}`, why: leaf.issued }, "issued the injector's serving certificate");
      deadlines.push(leaf.renewAt.getTime());
      this.reportBundle(await reconcileCaBundle(admission, settings.webhookConfiguration, trustBundle(webhookCas)));
    } else {
      this.reportBundle(await reconcileCertManagerAnnotation(admission, settings.webhookConfiguration, settings.certManagerCertificate));
    }
    const sidecar = { identity: cas.identity!, serving: cas.serving! };
    const key = [sidecar.identity, sidecar.serving].map((set) => `${set.active.certPem}${trustBundle(set)}`).join('');
    if (key !== this.sidecarKey) {
      this.sidecarKey = key;
      this.options.onSidecarCas(sidecar);
    }
    return Math.min(...deadlines);
  }

  private reportBundle(outcome: 'updated' | 'unchanged' | 'missing'): void {
    const { settings, log } = this.options;
    const what = settings.mode === 'self-managed' ? 'caBundle' : 'cert-manager.io/inject-ca-from annotation';
    if (outcome === 'updated') log.info({ webhookConfiguration: settings.webhookConfiguration }, `set the ${what} of the webhook configuration`);
    if (outcome === 'missing' && !this.missingWarned) {
      log.warn({ webhookConfiguration: settings.webhookConfiguration }, `the webhook configuration does not exist (yet): its ${what} is set once it does`);
    }
    this.missingWarned = outcome === 'missing';
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.all(this.watches.map((watch) => watch.stop()));
    await this.running;
    injectorMetrics.leading(false);
  }
}
