// The injected limit and V8's heap agree: the sidecar image's node, in a memory cgroup of the limit
// the injector sets, gives its heap half of it, as docs/sizing.md says; node without the image's
// flags would take 259 MiB at any limit up to 512Mi, past the whole of a small container.
import assert from 'node:assert/strict';
import { createMemoryCgroup, v8HeapLimit } from '../../bench/cgroup.js';
import { injectorConfigSpec } from '../../injector/config.js';
import { quantityNano } from '../../injector/quantity.js';
import { imageRuntime } from '../../bench/processes.js';

const MIB = 2 ** 20;

describe("the sidecar image's heap, under the injected memory limit", function () {
  this.timeout(60_000);
  let imageFlags: string[];

  before(async function () {
    imageFlags = (await imageRuntime('sidecar')).nodeFlags;
  });

  const defaultLimit = injectorConfigSpec.options.memoryLimit.presence;
  const limits = ['128Mi', defaultLimit.kind === 'default' ? String(defaultLimit.value) : '256Mi', '384Mi'];
  for (const limit of limits) {
    it(`is half of a ${limit} limit, less than node's own default there`, async function () {
      const limitBytes = Number(quantityNano(limit)! / 10n ** 9n);
      const cgroup = await createMemoryCgroup(`chaperone-test-heap-${process.pid}`, limitBytes);
      try {
        const heap = await v8HeapLimit(cgroup, imageFlags);
        // The old generation is half the limit; V8 adds a young generation of a few MiB.
        assert.ok(heap >= limitBytes / 2 && heap <= limitBytes / 2 + 8 * MIB, `V8's heap limit is ${heap / MIB} MiB under ${limit}`);
        const unflagged = await v8HeapLimit(cgroup, []);
        assert.ok(unflagged > heap + 32 * MIB, `without the image's flags V8 would take ${unflagged / MIB} MiB under ${limit}, with them ${heap / MIB}`);
      } finally {
        await cgroup.remove();
      }
    });
  }
});
