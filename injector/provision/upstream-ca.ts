// The cluster's CA, as the injector itself verifies the API server with it: what it writes into every
// labelled namespace (ConfigMap chaperone-ca, key upstream-ca.crt) for the sidecar to verify the API
// server with. Not the namespace's kube-root-ca.crt, which anyone with `edit` there may change.
//
// In a cluster: the service-account CA file (/var/run/secrets/kubernetes.io/serviceaccount/ca.crt,
// which the kubelet keeps current), watched. Outside one: the kubeconfig's certificate-authority-data,
// or its certificate-authority file, watched.
import type { KubeConnection } from '../../lib/kube-api/connection.js';
import { watchFile, type WatchedFile } from '../../lib/watch-file.js';

export interface UpstreamCa {
  /** The CA bundle (PEM) as last read; undefined while it has never been known. */
  current(): string | undefined;
  /** Where it comes from, for the logs. */
  readonly source: string;
  close(): void;
}

export interface UpstreamCaOptions {
  /** Called with each new bundle (not when the file goes missing: the last one stays). */
  onChange?: (pem: string) => void;
  onError?: (error: Error) => void;
  intervalMs?: number;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** The text when it holds at least one PEM certificate; undefined otherwise. */
function pemOf(content: Buffer | string | undefined): string | undefined {
  const text = content?.toString('utf8');
  return text !== undefined && PEM_CERTIFICATE.test(text) ? text : undefined;
}

export function upstreamCaOf(connection: Pick<KubeConnection, 'caFile' | 'verification' | 'source'>, options: UpstreamCaOptions = {}): UpstreamCa {
  const { caFile } = connection;
  if (caFile) {
    let pem: string | undefined;
    const watched: WatchedFile = watchFile(caFile, {
      ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
      ...(options.onError ? { onError: options.onError } : {}),
      onChange: (content) => {
        const next = pemOf(content);
        // A file swapped, emptied or half-written keeps the last bundle rather than none.
        if (next === undefined || next === pem) return;
        pem = next;
        options.onChange?.(next);
      },
    });
    pem = pemOf(watched.current());
    return { current: () => pem, source: caFile, close: () => watched.close() };
  }
  const { ca } = connection.verification();
  if (ca) {
    const pem = pemOf(ca);
    return { current: () => pem, source: `the certificate-authority-data of ${connection.source}`, close: () => undefined };
  }
  return { current: () => undefined, source: `nothing: ${connection.source} names no CA`, close: () => undefined };
}
