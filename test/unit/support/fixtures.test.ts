// The fixtures' promise to the suites: filled in before the tests, stopped after the suite's own after
// hooks, the last started first (a sidecar before the control plane it talks to).
import assert from 'node:assert/strict';
import { withStarted } from '../../support/fixtures.js';

describe('test fixtures (withStarted, on which withSidecar and the others stand)', function () {
  const events: string[] = [];
  const started = (name: string) => () => {
    events.push(`start ${name}`);
    return Promise.resolve({
      name,
      stop: () => {
        events.push(`stop ${name}`);
        return Promise.resolve();
      },
    });
  };

  describe('a suite with two fixtures and hooks of its own', function () {
    const first = withStarted(started('first'));
    before(function () {
      events.push(`suite before, after ${first.name}`);
    });
    const second = withStarted(started('second'));
    after(function () {
      events.push('suite after');
    });

    it('has both filled in', function () {
      assert.deepEqual([first.name, second.name], ['first', 'second']);
    });

    describe('a nested suite', function () {
      const inner = withStarted(started('inner'));
      it('has its own, filled in', function () {
        assert.equal(inner.name, 'inner');
      });
    });
  });

  after(function () {
    assert.deepEqual(events, ['start first', 'suite before, after first', 'start second', 'start inner', 'stop inner', 'suite after', 'stop second', 'stop first']);
  });
});
