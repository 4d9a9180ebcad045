// Auditors replaced by a new installation configuration: each is closed only once its requests are
// recorded, and the metrics' "since start" figures keep counting across the change.
import assert from 'node:assert/strict';
import type { Auditor, AuditStats } from '../../../../sidecar/audit/auditor.js';
import { AuditGenerations } from '../../../../sidecar/audit/generations.js';

function fakeAuditor(written: number, buffered: number) {
  const state = { closed: false };
  const auditor = {
    stats: (): AuditStats => ({ requests: written, events: written, sinks: { webhook: { received: written, written, dropped: 1, buffered: state.closed ? 0 : buffered, failures: 0 } } }),
    close: () => {
      state.closed = true;
      return Promise.resolve();
    },
  } as unknown as Auditor;
  return { auditor, state };
}

describe('sidecar/audit/generations', function () {
  it('closes a replaced auditor once its last request is recorded, and adds up every auditor since start', async function () {
    const first = fakeAuditor(10, 3);
    const second = fakeAuditor(4, 2);
    const generations = new AuditGenerations(first.auditor);
    let drain = () => undefined as void;
    generations.replace(second.auditor, new Promise<void>((resolve) => (drain = resolve)));
    assert.equal(generations.current(), second.auditor);
    assert.deepEqual(generations.stats().sinks.webhook, { received: 14, written: 14, dropped: 2, buffered: 5, failures: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(first.state.closed, false, 'still recording the requests it began');
    drain();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(first.state.closed, true);
    assert.deepEqual(generations.stats().sinks.webhook, { received: 14, written: 14, dropped: 2, buffered: 2, failures: 0 }, 'its counts stay; nothing of it is buffered');
    await generations.close();
    assert.equal(second.state.closed, true);
  });
});
