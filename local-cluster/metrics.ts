// Prometheus' text exposition format, read as Prometheus reads it: one sample per line,
// `name{label="value",...} value`, and each family's `# TYPE name type`.
import { connect } from 'node:tls';
import type { ApiextensionsV1Api } from '@kubernetes/client-node';
import { ensureGoTool } from './go-install.js';
import { rawRequest } from './sidecar.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** Each metric family's type (counter, gauge, histogram, summary, untyped), by its name. */
  types: Map<string, string>;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(LABEL)) labels[name!] = unescape(value!);
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return { samples, types };
}

/** The sum of the samples of this name whose labels include these. */
export function sampleValue(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  return exposition.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value))
    .reduce((sum, s) => sum + s.value, 0);
}

const SERIES: Readonly<Record<string, readonly string[]>> = { histogram: ['_bucket', '_sum', '_count'], summary: ['', '_sum', '_count'] };

/**
 * The names a query can select: every sample's, and every declared family's series, which a labelled
 * counter has before its first increment (a histogram's as name_bucket, name_sum and name_count).
 */
export function exportedNames(exposition: Exposition): Set<string> {
  const names = new Set(exposition.samples.map((s) => s.name));
  for (const [family, type] of exposition.types) for (const suffix of SERIES[type] ?? ['']) names.add(family + suffix);
  return names;
}

/** GET /metrics over HTTPS (with the CA that verifies the server) or, without a CA, over HTTP. */
export async function scrape(url: string, ca?: string): Promise<Exposition> {
  if (ca !== undefined) {
    const response = await rawRequest(url, { ca });
    if (response.status !== 200) throw new Error(`${url}: ${response.status} ${response.body}`);
    return parseExposition(response.body);
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return parseExposition(await response.text());
}

/** When the certificate a TLS server on 127.0.0.1 presents expires (Unix time). */
export function servedCertificateExpiry(port: number, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca }, () => {
      resolve(new Date(socket.getPeerCertificate().valid_to).getTime() / 1000);
      socket.end();
    });
    socket.on('error', reject);
  });
}

/** The Prometheus Operator's kinds that manifests/components/monitoring uses. */
export const MONITORING_KINDS = [
  { kind: 'PodMonitor', plural: 'podmonitors' },
  { kind: 'PrometheusRule', plural: 'prometheusrules' },
] as const;

/**
 * Stand-ins for the Prometheus Operator's CustomResourceDefinitions (monitoring.coreos.com/v1),
 * without their schemas (which are not at hand here): the API server then accepts the monitoring
 * component's objects by kind and namespace; test/e2e/monitoring.test.ts checks what is in them.
 */
export async function installMonitoringCrds(apiextensions: ApiextensionsV1Api): Promise<void> {
  for (const { kind, plural } of MONITORING_KINDS) {
    const name = `${plural}.monitoring.coreos.com`;
    const exists = await apiextensions.readCustomResourceDefinition({ name }).then(
      () => true,
      () => false,
    );
    if (exists) continue;
    await apiextensions.createCustomResourceDefinition({
      body: {
        metadata: { name },
        spec: {
          group: 'monitoring.coreos.com',
          scope: 'Namespaced',
          names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } }],
        },
      },
    });
  }
  // Established: the API server serves the kinds (kubectl's discovery finds them).
  for (const { plural } of MONITORING_KINDS) {
    const name = `${plural}.monitoring.coreos.com`;
    for (let deadline = Date.now() + 30_000; ; ) {
      const crd = await apiextensions.readCustomResourceDefinition({ name });
      if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`${name} is not established after 30s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** The Prometheus release whose promtool checks the rules (github.com/prometheus/prometheus, Go module version). */
export const PROMETHEUS_MODULE_VERSION = 'v0.316.0';

/**
 * Prometheus' promtool: CHAPERONE_PROMTOOL, else the cache beside the control plane's binaries,
 * else built there from the Go module proxy (about ten minutes on two busy cores, once).
 */
export function ensurePromtool(log: (line: string) => void): Promise<string> {
  return ensureGoTool({ command: 'promtool', pkg: 'github.com/prometheus/prometheus/cmd/promtool', version: PROMETHEUS_MODULE_VERSION, envVar: 'CHAPERONE_PROMTOOL' }, log);
}
