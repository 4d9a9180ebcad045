// What the audit tests share: a webhook receiver as a security team would run one (HTTPS, client
// certificates from its own CA, EventList batches in, each also kept for the run's strict decoding
// by the API server's Go types, local-cluster/audit-join.ts; it can be stopped and started again on
// the same port), and the sidecar's audit file read back.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { kubeconfigYaml } from '../../../../lib/kubeconfig.js';
import { createCA, issueCertificate, type CertificateAndKey } from '../../../../lib/pki.js';
import type { Event, EventList } from '../../../../sidecar/audit/types.js';
import type { RawResponse } from '../../../../local-cluster/sidecar.js';
import { registerAuditWebhookReceiver } from '../../../../local-cluster/audit-join.js';

export interface Receiver {
  url: string;
  /** A kubeconfig for --audit-webhook-config-file: the receiver's CA, a client certificate it trusts. */
  kubeconfig: string;
  /** The client's key, for tests that look for it where it must not be. */
  client: CertificateAndKey;
  events: Event[];
  /** Content types and request paths seen, one per batch. */
  batches: { contentType: string | undefined; path: string | undefined; size: number }[];
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good and removes its files. */
  dispose(): Promise<void>;
}

export async function startReceiver(options: { path?: string } = {}): Promise<Receiver> {
  const ca = createCA({ commonName: 'audit-receiver-ca' });
  const serving = issueCertificate(ca, { commonName: 'audit-receiver', usage: 'server', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'] });
  const client = issueCertificate(ca, { commonName: 'chaperone-audit', usage: 'client' });
  const events: Event[] = [];
  const batches: Receiver['batches'] = [];
  // Every batch, as its bytes, is decoded strictly with the API server's Go types at the end of the run.
  const received = registerAuditWebhookReceiver();
  let server: Server | undefined;
  let port = 0;
  const start = async () => {
    const created = createServer({ cert: serving.certPem, key: serving.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (received) appendFileSync(received, Buffer.concat([body, Buffer.from('\n')]));
        const list = JSON.parse(body.toString('utf8')) as EventList;
        if (list.kind !== 'EventList' || list.apiVersion !== 'audit.k8s.io/v1') {
          res.writeHead(400).end();
          return;
        }
        events.push(...list.items);
        batches.push({ contentType: req.headers['content-type'], path: req.url, size: list.items.length });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => created.listen(port, '127.0.0.1', resolve));
    port = (created.address() as AddressInfo).port;
    server = created;
  };
  await start();
  const url = `https://127.0.0.1:${port}${options.path ?? '/audit'}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'chaperone-receiver-'));
  const kubeconfig = path.join(dir, 'webhook.kubeconfig');
  writeFileSync(kubeconfig, kubeconfigYaml(url, ca.certPem, 'chaperone', client), { mode: 0o600 });
  const stop = async () => {
    const running = server;
    server = undefined;
    if (!running) return;
    await new Promise<void>((resolve) => {
      running.close(() => resolve());
      running.closeAllConnections();
    });
  };
  return {
    url,
    kubeconfig,
    client,
    events,
    batches,
    start,
    stop,
    dispose: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The events in a JSON-lines audit file (the sidecar's file sink, or its standard output). */
export async function readEventLines(file: string): Promise<Event[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  return parseEventLines(text);
}

export function parseEventLines(text: string): Event[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Event);
}

/** An audit file outside the sidecar's own directory (which goes when the sidecar stops). */
export function keptAuditFile(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'chaperone-audit-')), 'audit.jsonl');
}

/** Waits until the file holds an event of that stage for every auditID (events are written when a response closes, a moment after the client read it). */
export async function waitForEventLines(file: string, auditIDs: readonly string[], stage = 'ResponseComplete', timeoutMs = 5000): Promise<Event[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = (await readEventLines(file)).filter((e) => auditIDs.includes(e.auditID));
    if (auditIDs.every((id) => events.some((e) => e.auditID === id && e.stage === stage)) || Date.now() > deadline) return events;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The auditID the sidecar chose, from the Audit-Id header of its answer. */
export function auditIdOf(response: RawResponse): string {
  const id = response.headers['audit-id'];
  assert.ok(typeof id === 'string' && id.length > 0, `the response (${response.status}) carries an Audit-Id`);
  return id;
}
