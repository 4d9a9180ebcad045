import assert from 'node:assert/strict';
import { pino } from 'pino';
import { collectWhenIdle, IdleCollector } from '../../../lib/idle-collection.js';

const MiB = 2 ** 20;
const silent = pino({ enabled: false });

/** A heap and a request count the test moves by hand, and a gc that records what it was asked for. */
function world(heapUsed = 20 * MiB) {
  const state = { requests: 0, heapUsed, calls: [] as unknown[] };
  const gc = ((options?: unknown) => {
    state.calls.push(options);
    state.heapUsed = 12 * MiB;
  }) as NodeJS.GCFunction;
  const collector = new IdleCollector(gc, { activity: () => state.requests, heapUsedBytes: () => state.heapUsed, log: silent, minGrowthBytes: 4 * MiB });
  return { state, collector };
}

describe('lib/idle-collection: one collection when a busy spell ends', () => {
  it('collects what start-up left at the first quiet look, with the kind of collection that gives pages back', () => {
    const { state, collector } = world();
    collector.check();
    assert.deepEqual(state.calls, [{ type: 'major', flavor: 'last-resort' }]);
  });

  it('collects once per spell: never while requests keep arriving, once after they stop, not again while quiet', () => {
    const { state, collector } = world();
    collector.check(); // start-up
    for (let i = 0; i < 5; i++) {
      state.requests += 10;
      state.heapUsed += 3 * MiB;
      collector.check();
    }
    assert.equal(state.calls.length, 1, 'no collection while busy');
    collector.check();
    assert.equal(state.calls.length, 2, 'one collection at the first quiet look');
    state.heapUsed += 10 * MiB; // quiet, yet grown (a watch's events): left to V8
    for (let i = 0; i < 5; i++) collector.check();
    assert.equal(state.calls.length, 2);
  });

  it('leaves the heap alone after a spell that grew it by less than the threshold', () => {
    const { state, collector } = world();
    collector.check();
    state.requests++;
    state.heapUsed = 12 * MiB + 3 * MiB;
    collector.check();
    collector.check();
    assert.equal(state.calls.length, 1);
    state.requests++;
    state.heapUsed = 12 * MiB + 5 * MiB;
    collector.check();
    collector.check();
    assert.equal(state.calls.length, 2);
  });

  it('runs on its own timer, which stops when told', async () => {
    let calls = 0;
    const gc = (() => void calls++) as NodeJS.GCFunction;
    const stop = collectWhenIdle({ gc, activity: () => 0, log: silent, firstLookMs: 5, intervalMs: 5, minGrowthBytes: 0, heapUsedBytes: () => 1 });
    const deadline = Date.now() + 10_000;
    while (calls === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    stop();
    assert.equal(calls, 1, 'start-up collected once, then quiet');
  });

  it('says so, and looks at nothing, without node --expose-gc', () => {
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    let looked = 0;
    collectWhenIdle({ gc: undefined, activity: () => looked++, log })();
    assert.equal(looked, 0);
    assert.match(lines.join(''), /garbage is left to V8 after busy spells: node runs without --expose-gc/);
  });
});
