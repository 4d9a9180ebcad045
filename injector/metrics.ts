// What an operator graphs and alerts on for the injector: admissions (by outcome and reason, and how
// long each took), provisioning errors, drift put back, and when the CAs and the serving certificate
// expire. Served as GET /metrics on the webhook's HTTPS port (server.ts); docs/operations.md#monitoring.
//
// One set per process, as the injector is one per process: the controller's parts record into it
// without being handed it. Tests that run several injectors in one process read differences.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { certificateInfo } from '../lib/pki.js';
import type { CaKind } from './provision/names.js';

/** What an admission came to: the pod patched, left as it was, refused, no review at all, or a failure of the injector's own (500). */
export type AdmissionOutcome = 'injected' | 'unchanged' | 'denied' | 'malformed' | 'error';

function expirySeconds(certPem: string): number {
  return certificateInfo(certPem).notAfter.getTime() / 1000;
}

export class InjectorMetrics {
  readonly registry = new Registry();
  readonly admissions = new Counter({
    name: 'chaperone_injector_admissions_total',
    help: 'Admission reviews answered, by outcome (injected, unchanged, denied, malformed, error) and, unless allowed, the reason (Forbidden, BadRequest, ServiceUnavailable, InternalError...).',
    labelNames: ['outcome', 'reason'] as const,
    registers: [this.registry],
  });
  readonly admissionDuration = new Histogram({
    name: 'chaperone_injector_admission_duration_seconds',
    help: 'Time from reading an admission review to answering it (namespace and provisioning look-ups included), by outcome.',
    labelNames: ['outcome'] as const,
    // The API server gives up after the webhook's timeoutSeconds (5).
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly provisioningErrors = new Counter({
    name: 'chaperone_injector_provisioning_errors_total',
    help: 'Failed passes over a labelled namespace (provision) or one no longer labelled (cleanup); each is retried with back-off.',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly certificateErrors = new Counter({
    name: 'chaperone_injector_certificate_errors_total',
    help: "Failed passes over the CAs, the injector's serving certificate and the webhook's caBundle; each is retried with back-off.",
    registers: [this.registry],
  });
  readonly installationConfigValid = new Gauge({
    name: 'chaperone_injector_installation_config_valid',
    help: 'Whether each installation configuration (a Secret with sidecar.yaml in the injector\'s namespace) loads as a sidecar would load it with the injector\'s settings (1) or is refused (0).',
    labelNames: ['secret'] as const,
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({
    name: 'chaperone_injector_drift_repairs_total',
    help: 'Objects the injector provisioned that someone else changed or deleted, put back, by kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  private readonly caExpiry = new Gauge({
    name: 'chaperone_injector_ca_expiry_timestamp_seconds',
    help: 'When the CA that signs now expires (Unix time), by CA (webhook, identity, serving); reported by the replica that holds the Lease.',
    labelNames: ['ca'] as const,
    registers: [this.registry],
  });
  private readonly leader = new Gauge({
    name: 'chaperone_injector_leader',
    help: 'Whether this replica holds the Lease (1) and so writes certificates and provisions namespaces, or not (0).',
    registers: [this.registry],
  });
  private servingCertificate: () => string | undefined = () => undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'chaperone_injector_' });
    this.leader.set(0);
    const serving = () => this.servingCertificate();
    new Gauge({
      name: 'chaperone_injector_serving_certificate_expiry_timestamp_seconds',
      help: 'When the certificate this replica serves the webhook with expires (Unix time).',
      registers: [this.registry],
      collect() {
        this.reset();
        const pem = serving();
        if (pem) this.set(expirySeconds(pem));
      },
    });
  }

  /** One answered review; reason is the refusal's (denial.ts), or "" when the pod was allowed. */
  admission(outcome: AdmissionOutcome, reason: string, seconds: number): void {
    this.admissions.inc({ outcome, reason });
    this.admissionDuration.observe({ outcome }, seconds);
  }

  /** Where the certificate the webhook serves is read from when Prometheus scrapes. */
  servingCertificateFrom(read: () => string | undefined): void {
    this.servingCertificate = read;
  }

  /** This replica took the Lease (true) or gave it up (false): only a leader reports the CAs. */
  leading(leads: boolean): void {
    this.leader.set(leads ? 1 : 0);
    if (!leads) this.caExpiry.reset();
  }

  /** The CAs as the leader's last pass left them. */
  cas(sets: Partial<Record<CaKind, { active: { certPem: string } }>>): void {
    for (const [ca, set] of Object.entries(sets)) this.caExpiry.set({ ca }, expirySeconds(set.active.certPem));
  }

  /** What provisioning put back, as the reconciler names it ("ConfigMap chaperone-ca (data)"): counted by kind. */
  repaired(objects: readonly string[]): void {
    for (const object of objects) this.driftRepairs.inc({ kind: object.split(' ', 1)[0]! });
  }
}

export const injectorMetrics = new InjectorMetrics();
