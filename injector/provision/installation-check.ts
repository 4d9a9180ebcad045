// The installation configurations, checked as soon as they change (and when the injector starts),
// not only when a pod arrives: whoever writes one that a sidecar would refuse hears of it at once,
// field by field, in the injector's log, as a Warning event on the Secret (kubectl describe secret)
// and in chaperone_injector_installation_config_valid. Any Secret of the injector's namespace with a
// sidecar.yaml is one. Checked with the injector's own settings; each pod's admission checks it again
// with that pod's (a Namespace's annotations may differ).
import { tmpdir } from 'node:os';
import type { V1Secret } from '@kubernetes/client-node';
import type { CoreV1 } from '../../lib/kube-api/resources.js';
import type { Logger } from '../../lib/log.js';
import { INSTALLATION_FILE, installationProblems, secretFromObject } from '../../lib/sidecar-config/installation.js';
import { injectorMetrics } from '../metrics.js';
import { sidecarArgs } from '../proxy.js';
import type { InjectionSettings } from '../settings.js';
import { describeError } from './kube.js';

export const INVALID_REASON = 'InvalidSidecarConfig';

export interface InstallationCheckOptions {
  core: CoreV1;
  /** The Secrets of the namespace now, then each change (AdmissionCache.followInstallationSecrets). */
  followSecrets: (listener: (name: string, secret: V1Secret | undefined) => void) => () => void;
  /** The injector's namespace, where the installation configurations are. */
  namespace: string;
  /** The injector's own settings for a pod (its flags), with which each configuration is loaded. */
  settings: InjectionSettings;
  /** An installation configuration appeared, changed or went (what each namespace may read follows). */
  onChange: () => void;
  log: Logger;
}

export class InstallationCheck {
  private unfollow: (() => void) | undefined;
  /** The resourceVersion last judged, by Secret. */
  private readonly judged = new Map<string, string>();

  constructor(private readonly options: InstallationCheckOptions) {}

  start(): void {
    let started = false;
    this.unfollow = this.options.followSecrets((name, secret) => {
      const wasOne = this.judged.has(name);
      if (!secret) {
        this.judged.delete(name);
        injectorMetrics.installationConfigValid.remove({ secret: name });
      } else void this.judge(secret);
      // The Secrets as they are when it starts are judged only: the provisioner starts from every namespace anyway.
      if (started && (wasOne || secret?.data?.[INSTALLATION_FILE] !== undefined)) this.options.onChange();
    });
    started = true;
  }

  private async judge(secret: V1Secret): Promise<void> {
    const name = secret.metadata!.name!;
    const version = secret.metadata?.resourceVersion ?? '';
    if (secret.data?.[INSTALLATION_FILE] === undefined) {
      this.judged.delete(name);
      return;
    }
    if (this.judged.get(name) === version) return;
    this.judged.set(name, version);
    const { namespace, settings, log } = this.options;
    const ref = `${namespace}/${name}`;
    try {
      const problems = await installationProblems(sidecarArgs({ ...settings, installationConfig: ref }), ref, secretFromObject(secret), tmpdir());
      injectorMetrics.installationConfigValid.set({ secret: name }, problems.length === 0 ? 1 : 0);
      if (problems.length === 0) {
        log.info({ installationConfig: ref, resourceVersion: version }, 'the installation configuration loads as a sidecar would load it');
        return;
      }
      log.error({ installationConfig: ref, resourceVersion: version, problems }, 'a sidecar would refuse the installation configuration: pods that get it are refused until it is fixed');
      await this.warn(secret, `a sidecar would refuse this installation configuration, and chaperone refuses the pods that get it: ${problems.join('; ')}`);
    } catch (err) {
      log.warn({ installationConfig: ref, err: describeError(err) }, 'could not check the installation configuration');
    }
  }

  private async warn(secret: V1Secret, message: string): Promise<void> {
    const now = new Date();
    await this.options.core.createNamespacedEvent({
      namespace: this.options.namespace,
      body: {
        metadata: { generateName: `${secret.metadata!.name!}.chaperone-invalid.` },
        involvedObject: { apiVersion: 'v1', kind: 'Secret', namespace: this.options.namespace, name: secret.metadata!.name!, uid: secret.metadata?.uid, resourceVersion: secret.metadata?.resourceVersion },
        reason: INVALID_REASON,
        type: 'Warning',
        message: message.length > 1000 ? `${message.slice(0, 997)}...` : message,
        source: { component: 'chaperone-injector' },
        reportingComponent: 'chaperone.dev/injector',
        reportingInstance: this.options.namespace,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  }

  stop(): void {
    this.unfollow?.();
  }
}
