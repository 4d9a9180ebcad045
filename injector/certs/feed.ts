// Every replica serves the certificate in one Secret of its namespace (written by the leader, or by
// cert-manager), and swaps it into its running TLS server when the Secret changes: subscribers get
// each new certificate (for https.Server.setSecureContext), and it can be written to files too.
import { rename, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeApi } from '../../lib/kube-api/client.js';
import type { CoreV1 } from '../../lib/kube-api/resources.js';
import type { Logger } from '../../lib/log.js';
import { certificateInfo, keyMatchesCertificate } from '../../lib/pki.js';
import { decodeData, listWatch, type Watching } from '../provision/kube.js';

export interface ServingCertificate {
  certPem: string;
  keyPem: string;
  /** The CA bundle that verifies it (ca.crt), when the Secret has one. */
  caPem?: string;
  notAfter: Date;
}

export type CertificateListener = (certificate: ServingCertificate) => void;

export interface CertificateFeedOptions {
  api: KubeApi;
  core: CoreV1;
  namespace: string;
  secret: string;
  log: Logger;
  /** Also write tls.crt and tls.key here (atomically, the key 0600), for servers that read files. */
  directory?: string;
}

export const TLS_CERT_KEY = 'tls.crt';
export const TLS_KEY_KEY = 'tls.key';
export const TLS_CA_KEY = 'ca.crt';

/** The certificate in a kubernetes.io/tls Secret, or why it cannot be served. */
export function servingCertificateFrom(secret: V1Secret): ServingCertificate | string {
  const data = decodeData(secret.data);
  const certPem = data[TLS_CERT_KEY];
  const keyPem = data[TLS_KEY_KEY];
  if (!certPem || !keyPem) return `it lacks ${TLS_CERT_KEY} or ${TLS_KEY_KEY}`;
  if (!keyMatchesCertificate(certPem, keyPem)) return `its ${TLS_KEY_KEY} does not belong to its ${TLS_CERT_KEY}`;
  return { certPem, keyPem, ...(data[TLS_CA_KEY] ? { caPem: data[TLS_CA_KEY] } : {}), notAfter: certificateInfo(certPem).notAfter };
}

async function writeAtomically(file: string, content: string, mode: number): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await writeFile(temporary, content, { mode });
  await rename(temporary, file);
}

export class CertificateFeed {
  private latest: ServingCertificate | undefined;
  private readonly listeners = new Set<CertificateListener>();
  private watching: Watching | undefined;
  private resolveReady!: () => void;
  private readonly readyPromise = new Promise<void>((resolve) => (this.resolveReady = resolve));
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly options: CertificateFeedOptions) {}

  start(): void {
    const { api, core, namespace, secret, log } = this.options;
    const fieldSelector = `metadata.name=${secret}`;
    this.watching = listWatch<V1Secret>({
      api,
      path: `/api/v1/namespaces/${namespace}/secrets`,
      fieldSelector,
      list: () => core.listNamespacedSecret({ namespace, fieldSelector }),
      onList: (items) => items.forEach((item) => this.offer(item)),
      onEvent: (type, object) => {
        if (type !== 'DELETED') this.offer(object);
        else log.warn({ secret: `${namespace}/${secret}` }, 'the serving certificate Secret was deleted; serving the last certificate until it is back');
      },
      log,
      what: `Secret ${namespace}/${secret}`,
    });
  }

  private offer(secret: V1Secret): void {
    const { namespace, log } = this.options;
    const certificate = servingCertificateFrom(secret);
    if (typeof certificate === 'string') {
      log.warn({ secret: `${namespace}/${this.options.secret}`, problem: certificate }, 'cannot serve the certificate in the Secret; keeping the previous one');
      return;
    }
    if (this.latest && this.latest.certPem === certificate.certPem && this.latest.keyPem === certificate.keyPem && this.latest.caPem === certificate.caPem) return;
    this.latest = certificate;
    log.info({ notAfter: certificate.notAfter.toISOString(), sha256: certificateInfo(certificate.certPem).sha256 }, 'serving a new certificate');
    for (const listener of this.listeners) this.deliver(listener, certificate);
    this.writing = this.writing.then(() => this.writeFiles(certificate));
    void this.writing.then(() => this.resolveReady());
  }

  private deliver(listener: CertificateListener, certificate: ServingCertificate): void {
    try {
      listener(certificate);
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'a certificate listener failed');
    }
  }

  private async writeFiles(certificate: ServingCertificate): Promise<void> {
    const directory = this.options.directory;
    if (!directory) return;
    try {
      await mkdir(directory, { recursive: true, mode: 0o700 });
      // The key first: a reader that sees the new certificate then finds its key in place.
      await writeAtomically(path.join(directory, TLS_KEY_KEY), certificate.keyPem, 0o600);
      await writeAtomically(path.join(directory, TLS_CERT_KEY), certificate.certPem, 0o644);
    } catch (err) {
      this.options.log.error({ err: (err as Error).message, directory }, 'could not write the serving certificate files');
    }
  }

  /** Called with every new certificate, and at once with the current one; returns the unsubscribe. */
  onCertificate(listener: CertificateListener): () => void {
    this.listeners.add(listener);
    if (this.latest) this.deliver(listener, this.latest);
    return () => this.listeners.delete(listener);
  }

  current(): ServingCertificate | undefined {
    return this.latest;
  }

  /** Resolves once a certificate is available (and written, with a directory). */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  async stop(): Promise<void> {
    await this.watching?.stop();
    await this.writing;
  }
}
