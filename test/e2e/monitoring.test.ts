// manifests/components/monitoring against what really runs: every metric its alerting rules and its
// Grafana dashboard query is exported by a running injector (with its controller) or by the sidecar
// of a pod that injector injected, on the shared control plane; every expression parses as PromQL
// (Prometheus' own grammar, @prometheus-io/lezer-promql); the monitors select what the components
// declare. And the injector's metrics say what happened: the admission, the CAs' and the serving
// certificate's expiry, the drift it put back.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { parser } from '@prometheus-io/lezer-promql';
import type { V1Pod } from '@kubernetes/client-node';
import { decodeData } from '../../injector/provision/kube.js';
import { CA_SECRET } from '../../injector/provision/names.js';
import { OPS_PORT, OPS_PORT_NAME } from '../../injector/proxy.js';
import { certificateInfo } from '../../lib/pki.js';
import { ensurePromtool, exportedNames, sampleValue, scrape, servedCertificateExpiry, type Exposition } from '../../local-cluster/metrics.js';
import { readCaBundles, startPodSidecar, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { withReplicatedInjector, withSharedControlPlane } from '../support/fixtures.js';

const COMPONENT = path.resolve(import.meta.dirname, '../../manifests/components/monitoring');
/** promtool's unit tests of the alerts, against the rules written beside them as chaperone.rules.yaml. */
const ALERT_TESTS = path.resolve(import.meta.dirname, '../fixtures/monitoring/alerts.test.yaml');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface Dashboard {
  panels: { title: string; type: string; targets?: { expr: string }[] }[];
  templating: { list: { name: string; query?: string | { query: string } }[] };
}

async function component<T>(file: string): Promise<T> {
  const text = await readFile(path.join(COMPONENT, file), 'utf8');
  return (file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text)) as T;
}

/** Grafana's variables, as a value PromQL accepts in their places. */
function withoutGrafanaVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replaceAll('$namespace', '.*');
}

/** The PromQL syntax errors in an expression (positions), and the metric names it selects. */
function readPromql(expr: string): { errors: number[]; metrics: string[] } {
  const errors: number[] = [];
  const metrics: string[] = [];
  parser.parse(expr).iterate({
    enter: (node) => {
      if (node.type.isError) errors.push(node.from);
      // A selector's metric name; a name given as {__name__="..."} is not used here.
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') metrics.push(expr.slice(node.from, node.to));
    },
  });
  return { errors, metrics };
}

/** Every PromQL expression of the component: where it is, and its text. */
async function expressions(): Promise<{ where: string; expr: string }[]> {
  const rule = await component<{ spec: { groups: { name: string; rules: Rule[] }[] } }>('prometheusrule.yaml');
  const dashboard = await component<Dashboard>('grafana-dashboard.json');
  return [
    ...rule.spec.groups.flatMap((group) => group.rules.map((r) => ({ where: `rule ${group.name}/${r.alert ?? r.record}`, expr: r.expr }))),
    ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}"`, expr: withoutGrafanaVariables(target.expr) }))),
    ...dashboard.templating.list.flatMap((variable) => {
      const query = typeof variable.query === 'object' ? variable.query.query : '';
      const selector = /^label_values\((\w+),/.exec(query ?? '')?.[1];
      return selector ? [{ where: `variable ${variable.name}`, expr: selector }] : [];
    }),
  ];
}

describe('monitoring (manifests/components/monitoring) against the running injector and sidecar', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const { installation, replica, injector } = withReplicatedInjector({ cp, clients }, ['--webhook-hosts=127.0.0.1', '--resync-interval=5s']);
  let webhookCa: string;
  let namespace: string;
  let pod: V1Pod;
  let sidecar: PodSidecar;
  let injectorUrl: string;

  const injectorMetrics = () => scrape(`${injectorUrl}/metrics`, webhookCa);
  const sidecarMetrics = () => scrape(`${sidecar.opsUrl}/metrics`);

  before(async function () {
    this.timeout(15 * 60_000);
    injectorUrl = `https://127.0.0.1:${injector.port}`;
    webhookCa = (await readCaBundles(installation)).bundles[0]!;
    namespace = await installation.createLabelledNamespace('monitoring');
    await waitFor('the namespace to be provisioned', async () => (await replica.provisioningStatus(namespace)).ready, 30_000);
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace }).then(() => true));
    pod = await waitFor(
      'the webhook to inject a pod',
      async () => {
        const name = `dashboard-${Date.now().toString(36)}`;
        await clients.core.createNamespacedPod({ namespace, body: { metadata: { name }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } } });
        const created = await clients.core.readNamespacedPod({ name, namespace });
        if (created.spec?.serviceAccountName === 'chaperone-impersonator') return created;
        await clients.core.deleteNamespacedPod({ name, namespace });
        return undefined;
      },
      30_000,
    );
    sidecar = await startPodSidecar(cp, clients, pod);
  });

  after(async function () {
    await sidecar?.stop();
  });

  it('has expressions that all parse as PromQL, and rules that Prometheus would load', async function () {
    const all = await expressions();
    assert.ok(all.length >= 20, `only ${all.length} expressions`);
    const broken = all.filter(({ expr }) => readPromql(expr).errors.length > 0).map(({ where, expr }) => `${where}: ${expr}`);
    assert.deepEqual(broken, []);
    // What Prometheus' rule loader (rulefmt) insists on besides the expression.
    const rule = await component<{ apiVersion: string; kind: string; spec: { groups: { name: string; rules: Rule[] }[] } }>('prometheusrule.yaml');
    assert.equal(rule.apiVersion, 'monitoring.coreos.com/v1');
    const groups = rule.spec.groups.map((g) => g.name);
    assert.equal(new Set(groups).size, groups.length, 'group names are unique');
    for (const r of rule.spec.groups.flatMap((g) => g.rules)) {
      assert.ok((r.alert === undefined) !== (r.record === undefined), `${r.alert ?? r.record}: one of alert and record`);
      if (r.for !== undefined) assert.match(r.for, /^(\d+(ms|s|m|h|d|w|y))+$/, `${r.alert}: for`);
      assert.ok(['critical', 'warning', 'info'].includes(r.labels?.severity ?? ''), `${r.alert}: severity`);
      assert.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`);
    }
  });

  it('has rules that promtool check rules accepts, and alerts that fire when and as their docs say (promtool test rules)', async function () {
    this.timeout(45 * 60_000);
    const promtool = await ensurePromtool((line) => process.stderr.write(`      ${line}\n`));
    const rule = await component<{ spec: { groups: { rules: unknown[] }[] } }>('prometheusrule.yaml');
    const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-rules-'));
    try {
      // The rule file Prometheus loads is the PrometheusRule's spec, as the operator writes it.
      const file = path.join(dir, 'chaperone.rules.yaml');
      await writeFile(file, YAML.stringify({ groups: rule.spec.groups }));
      const run = (args: string[]) =>
        new Promise<{ code: number; output: string }>((resolve) => execFile(promtool, args, (error, stdout, stderr) => resolve({ code: error ? 1 : 0, output: stdout + stderr })));
      const checked = await run(['check', 'rules', '--lint=all', '--lint-fatal', file]);
      assert.equal(checked.code, 0, checked.output);
      assert.match(checked.output, new RegExp(`SUCCESS: ${rule.spec.groups.flatMap((group) => group.rules).length} rules found`));
      const tests = path.join(dir, path.basename(ALERT_TESTS));
      await writeFile(tests, await readFile(ALERT_TESTS));
      const tested = await run(['test', 'rules', tests]);
      assert.equal(tested.code, 0, tested.output);
      assert.match(tested.output, /SUCCESS/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('uses only metrics that the running injector or sidecar exports, in its rules, its dashboard and the alert tests', async function () {
    // Traffic first, so that the sidecar has requests, an authentication failure and an audit sink to report.
    const refused = await rawRequest(`${sidecar.url}/api/v1/namespaces/${namespace}/pods`, { ca: sidecar.dashboard.caPem, headers: { authorization: 'Bearer not-a-token' } });
    assert.equal(refused.status, 401);
    const exported = new Set([...exportedNames(await injectorMetrics()), ...exportedNames(await sidecarMetrics())]);
    const alertTests = YAML.parse(await readFile(ALERT_TESTS, 'utf8')) as { tests: { input_series: { series: string }[] }[] };
    const used = new Set([
      ...(await expressions()).flatMap(({ expr }) => readPromql(expr).metrics),
      // The alert tests' made-up series are of real metrics too.
      ...alertTests.tests.flatMap((test) => test.input_series.map(({ series }) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(series)![0])),
    ]);
    assert.ok(used.size >= 15, `only ${used.size} metrics used`);
    assert.deepEqual([...used].filter((name) => !exported.has(name)).sort(), []);
  });

  it('scrapes what the monitors select: the sidecar port the injector declares, the injector port the Deployment names', async function () {
    const sidecars = await component<{ spec: { podMetricsEndpoints: { port: string; path: string }[] } }>('podmonitor-sidecars.yaml');
    const container = pod.spec!.initContainers!.find((c) => c.name === 'chaperone')!;
    assert.deepEqual(sidecars.spec.podMetricsEndpoints.map((e) => [e.port, e.path]), [[OPS_PORT_NAME, '/metrics']]);
    assert.deepEqual(container.ports?.map((port) => ({ ...port })), [{ name: OPS_PORT_NAME, containerPort: OPS_PORT, protocol: 'TCP' }], 'the pod as the API server stored it declares the port');
    assert.ok(container.args!.includes(`--ops-listen=:${OPS_PORT}`), 'where the sidecar serves /metrics');
    const injectorMonitor = await component<{ spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path: string; scheme: string }[] } }>('podmonitor-injector.yaml');
    const deployment = YAML.parse(await readFile(path.resolve(COMPONENT, '../../base/deployment.yaml'), 'utf8')) as {
      spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: { ports: { name: string }[] }[] } } };
    };
    for (const [key, value] of Object.entries(injectorMonitor.spec.selector.matchLabels)) assert.equal(deployment.spec.template.metadata.labels[key], value, key);
    const endpoint = injectorMonitor.spec.podMetricsEndpoints[0]!;
    assert.ok(deployment.spec.template.spec.containers[0]!.ports.some((p) => p.name === endpoint.port), `the Deployment names port ${endpoint.port}`);
    assert.equal(endpoint.scheme, 'https');
    assert.equal((await rawRequest(`${injectorUrl}${endpoint.path}`, { ca: webhookCa })).status, 200);
  });

  it("reports when each CA expires as the CA Secrets say, and the certificate it serves as served; it leads", async function () {
    const samples = await injectorMetrics();
    for (const [ca, secret] of Object.entries(CA_SECRET)) {
      const data = decodeData((await clients.core.readNamespacedSecret({ name: secret, namespace: installation.namespace })).data);
      const expected = certificateInfo(data['ca.crt']!).notAfter.getTime() / 1000;
      assert.equal(sampleValue(samples, 'chaperone_injector_ca_expiry_timestamp_seconds', { ca }), expected, ca);
    }
    assert.equal(sampleValue(samples, 'chaperone_injector_serving_certificate_expiry_timestamp_seconds'), await servedCertificateExpiry(injector.port, webhookCa));
    assert.equal(sampleValue(samples, 'chaperone_injector_leader'), 1);
  });

  it('counts the admission of a pod the API server sent it', async function () {
    const injected = (samples: Exposition) => sampleValue(samples, 'chaperone_injector_admissions_total', { outcome: 'injected', reason: '' });
    const before = injected(await injectorMetrics());
    await clients.core.createNamespacedPod({ namespace, body: { metadata: { name: `counted-${Date.now().toString(36)}` }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } } });
    assert.equal(injected(await injectorMetrics()) - before, 1);
  });

  it('counts what someone changed in a provisioned namespace and it put back, by kind', async function () {
    const repaired = (samples: Exposition) => sampleValue(samples, 'chaperone_injector_drift_repairs_total', { kind: 'ConfigMap' });
    const before = repaired(await injectorMetrics());
    const cm = await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace });
    await clients.core.replaceNamespacedConfigMap({ name: 'chaperone-ca', namespace, body: { ...cm, data: { ...cm.data, extra: 'changed by someone' } } });
    await waitFor('the ConfigMap put back', async () => (await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace })).data?.extra === undefined, 30_000);
    assert.equal(await waitFor('the repair counted', async () => repaired(await injectorMetrics()) - before || undefined), 1);
  });
});
