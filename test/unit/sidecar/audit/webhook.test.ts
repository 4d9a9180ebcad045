// The webhook sink: EventList batches to a receiver named by a kubeconfig, retried until taken; a
// bounded buffer that holds requests back (block) or drops and counts (drop) when full.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { loadWebhookKubeconfig } from '../../../../lib/webhook-kubeconfig.js';
import { webhookDelivery, WebhookSink, type Deliver, type WebhookOptions } from '../../../../sidecar/audit/sinks/webhook.js';
import { capturingLogger } from './helpers.js';
import { startReceiver, type Receiver } from './support.js';
import { waitFor } from '../../../../local-cluster/wait.js';

const event = (n: number) => ({ auditID: `e${n}`, json: JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', auditID: `e${n}` }) });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const options = (overrides: Partial<WebhookOptions> = {}): WebhookOptions => ({
  batchMaxSize: 3,
  batchMaxWaitMs: 20,
  bufferSize: 5,
  overflow: 'block',
  initialBackoffMs: 20,
  maxBackoffMs: 100,
  flushTimeoutMs: 2000,
  ...overrides,
});

describe('sidecar/audit/sinks/webhook', function () {
  this.timeout(20_000);

  describe('batching and retries', function () {
    it('sends full batches at once, and a partial batch after the wait', async function () {
      const sent: string[][] = [];
      const deliver: Deliver = (body) => {
        sent.push((JSON.parse(body) as { items: { auditID: string }[] }).items.map((i) => i.auditID));
        return Promise.resolve();
      };
      const sink = new WebhookSink(deliver, options({ batchMaxWaitMs: 200, bufferSize: 100 }), capturingLogger().log);
      for (let n = 0; n < 4; n++) sink.write(event(n));
      await waitFor('the full batch', () => sent.length === 1);
      assert.deepEqual(sent, [['e0', 'e1', 'e2']], 'a full batch does not wait');
      await waitFor('the partial batch', () => sent.length === 2);
      assert.deepEqual(sent[1], ['e3']);
      await sink.close();
    });

    it('retries a batch the receiver did not take, with growing waits, until it does', async function () {
      const attempts: number[] = [];
      let failures = 3;
      const deliver: Deliver = () => {
        attempts.push(Date.now());
        return failures-- > 0 ? Promise.reject(new Error('the webhook answered 503')) : Promise.resolve();
      };
      const { log, lines } = capturingLogger();
      const sink = new WebhookSink(deliver, options({ batchMaxWaitMs: 1 }), log);
      sink.write(event(1));
      await waitFor('delivery', () => sink.stats().written === 1);
      assert.equal(attempts.length, 4);
      const waits = attempts.slice(1).map((at, i) => at - attempts[i]!);
      assert.ok(waits[2]! >= waits[0]! * 1.5, `the waits grow: ${waits.join(', ')}ms`);
      assert.deepEqual(sink.stats(), { received: 1, written: 1, dropped: 0, buffered: 0, failures: 3 });
      assert.equal(lines.filter((l) => l.msg === 'could not deliver audit events to the webhook; retrying').length, 3);
      await sink.close();
    });
  });

  describe('the receiver, from a kubeconfig', function () {
    let receiver: Receiver;
    beforeEach(async function () {
      receiver = await startReceiver();
    });
    afterEach(async function () {
      await receiver.dispose();
    });

    it('posts audit.k8s.io/v1 EventLists to the server path, verifying its CA and presenting the client certificate', async function () {
      const target = loadWebhookKubeconfig(receiver.kubeconfig);
      const delivery = webhookDelivery(target);
      const sink = new WebhookSink(delivery.deliver, options(), capturingLogger().log, delivery.close);
      for (let n = 0; n < 4; n++) sink.write(event(n));
      await sink.close();
      assert.deepEqual(receiver.events.map((e) => e.auditID), ['e0', 'e1', 'e2', 'e3']);
      assert.ok(receiver.batches.every((b) => b.contentType === 'application/json' && b.path === '/audit?timeout=10s'));
    });

    it('reads certificate and key files relative to the kubeconfig, and a bearer token', async function () {
      const dir = path.dirname(receiver.kubeconfig);
      const config = YAML.parse(readFileSync(receiver.kubeconfig, 'utf8')) as {
        clusters: { cluster: Record<string, string> }[];
        users: { user: Record<string, string> }[];
      };
      const user = config.users[0]!.user;
      writeFileSync(path.join(dir, 'client.crt'), Buffer.from(user['client-certificate-data']!, 'base64'));
      writeFileSync(path.join(dir, 'client.key'), Buffer.from(user['client-key-data']!, 'base64'));
      config.users[0]!.user = { 'client-certificate': 'client.crt', 'client-key': 'client.key', token: 'webhook-token-123' };
      writeFileSync(path.join(dir, 'files.kubeconfig'), YAML.stringify(config));
      const target = loadWebhookKubeconfig(path.join(dir, 'files.kubeconfig'));
      assert.equal((await target.credentials()).headers.authorization, 'Bearer webhook-token-123');
      const delivery = webhookDelivery(target);
      await delivery.deliver('{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}');
      delivery.close();
      assert.equal(receiver.batches.length, 1);
    });

    it('refuses a kubeconfig that has no current-context, or a file that is not there, naming the file', function () {
      const dir = path.dirname(receiver.kubeconfig);
      const file = path.join(dir, 'empty.kubeconfig');
      writeFileSync(file, YAML.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
      assert.throws(() => loadWebhookKubeconfig(file), new RegExp(`${file}: current-context is not set`));
      assert.throws(() => loadWebhookKubeconfig(path.join(dir, 'missing')), /missing: cannot read: ENOENT/);
    });

    it('block: a receiver stopped for a while mid-run loses nothing; requests wait for room meanwhile', async function () {
      const delivery = webhookDelivery(loadWebhookKubeconfig(receiver.kubeconfig));
      const sink = new WebhookSink(delivery.deliver, options({ overflow: 'block' }), capturingLogger().log, delivery.close);
      let heldBack = 0;
      let mostBuffered = 0;
      const produce = async (from: number, to: number) => {
        for (let n = from; n < to; n++) {
          const wait = sink.ready();
          if (wait) {
            heldBack++;
            await wait;
          }
          sink.write(event(n));
          mostBuffered = Math.max(mostBuffered, sink.stats().buffered);
        }
      };
      await produce(0, 10);
      await waitFor('the first events', () => receiver.events.length >= 9);
      await receiver.stop();
      const producing = produce(10, 40);
      await sleep(400); // the receiver is away: the buffer fills and the producer is held back
      assert.ok(sink.stats().buffered <= 5 && sink.stats().failures > 0, JSON.stringify(sink.stats()));
      await receiver.start();
      await producing;
      await sink.close();
      assert.ok(heldBack > 0, 'the producer was held back while the buffer was full');
      assert.ok(mostBuffered <= 5, `the buffer stayed bounded (${mostBuffered})`);
      const received = new Set(receiver.events.map((e) => e.auditID));
      assert.equal(received.size, 40, 'every event arrived');
      assert.equal(sink.stats().dropped, 0);
    });

    it('drop: with the receiver away, what does not fit is dropped, counted and logged: received + dropped = produced', async function () {
      const delivery = webhookDelivery(loadWebhookKubeconfig(receiver.kubeconfig));
      const { log, lines } = capturingLogger();
      const sink = new WebhookSink(delivery.deliver, options({ overflow: 'drop' }), log, delivery.close);
      for (let n = 0; n < 6; n++) {
        sink.write(event(n));
        await waitFor(`event ${n}`, () => receiver.events.length === n + 1);
      }
      await receiver.stop();
      for (let n = 6; n < 40; n++) {
        assert.equal(sink.ready(), undefined, 'drop mode never holds a request back');
        sink.write(event(n));
        await sleep(2);
      }
      await receiver.start();
      await sink.close();
      const { dropped } = sink.stats();
      assert.ok(dropped > 0);
      assert.equal(new Set(receiver.events.map((e) => e.auditID)).size + dropped, 40);
      const droppedIds = lines.filter((l) => l.msg === 'audit event dropped: the audit buffer is full').map((l) => l.auditID);
      assert.equal(droppedIds.length, dropped, 'every drop is logged, with its auditID');
      assert.ok(droppedIds.every((id) => !receiver.events.some((e) => e.auditID === id)));
    });

    it('flushes what it holds on close, without waiting for the batch to fill', async function () {
      const delivery = webhookDelivery(loadWebhookKubeconfig(receiver.kubeconfig));
      const sink = new WebhookSink(delivery.deliver, options({ batchMaxWaitMs: 60_000, batchMaxSize: 100 }), capturingLogger().log, delivery.close);
      for (let n = 0; n < 3; n++) sink.write(event(n));
      const started = Date.now();
      await sink.close();
      assert.ok(Date.now() - started < 2000);
      assert.equal(receiver.events.length, 3);
    });

    it('counts and logs what it could not deliver by the end of the flush timeout', async function () {
      await receiver.stop();
      const delivery = webhookDelivery(loadWebhookKubeconfig(receiver.kubeconfig));
      const { log, lines } = capturingLogger();
      const sink = new WebhookSink(delivery.deliver, options({ flushTimeoutMs: 200 }), log, delivery.close);
      for (let n = 0; n < 4; n++) sink.write(event(n));
      await sink.close();
      assert.equal(sink.stats().dropped, 4);
      assert.ok(lines.some((l) => l.lost === 4));
      sink.write(event(5));
      assert.equal(sink.stats().dropped, 5, 'after close, nothing is taken');
    });
  });
});
