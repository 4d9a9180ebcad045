import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalQuantity, quantityNano } from '../../../injector/quantity.js';

describe('injector/quantity', function () {
  // What the API server stores for each (the end-to-end suite checks a few against the real one).
  const CANONICAL: [string, string][] = [
    ['0.5', '500m'],
    ['1000m', '1'],
    ['1500m', '1500m'],
    ['2000', '2k'],
    ['100Mi', '100Mi'],
    ['1024Ki', '1Mi'],
    ['1536Ki', '1536Ki'],
    ['0.5Gi', '512Mi'],
    ['1.5Ki', '1536'],
    ['512Ki', '512Ki'],
    ['0.1m', '100u'],
    ['0.0000000001', '1n'],
    ['0', '0'],
    ['0.000', '0'],
    ['1000Mi', '1000Mi'],
  ];
  for (const [written, stored] of CANONICAL) {
    it(`stores ${written} as ${stored}`, function () {
      assert.equal(canonicalQuantity(written), stored);
    });
  }

  for (const bad of ['', '-1', '+1', '1.5.5', '1e3', '10 Mi', 'Mi', '1mi', '.5', '1.', '0x10', '99999999999999999999E']) {
    it(`refuses ${JSON.stringify(bad)}`, function () {
      assert.equal(canonicalQuantity(bad), undefined);
    });
  }

  it('keeps the value and is stable: the canonical form of a canonical form is itself', function () {
    const suffix = fc.constantFrom('', 'n', 'u', 'm', 'k', 'M', 'G', 'Ki', 'Mi', 'Gi');
    const written = fc
      .tuple(fc.nat({ max: 1_000_000 }), fc.option(fc.stringMatching(/^\d{1,4}$/), { nil: undefined }), suffix)
      .map(([whole, fraction, unit]) => `${whole}${fraction === undefined ? '' : `.${fraction}`}${unit}`);
    fc.assert(
      fc.property(written, (text) => {
        const canonical = canonicalQuantity(text);
        assert.ok(canonical !== undefined, text);
        assert.equal(canonicalQuantity(canonical), canonical);
        // Rounding up to nano-units is the only change of value allowed.
        const before = quantityNano(text)!;
        assert.equal(quantityNano(canonical), before);
      }),
    );
  });
});
