// Kubernetes resource quantities in the form the API server stores them ("0.5" is kept as "500m",
// "1024Mi" as "1Gi"), so that the injector's output survives the API server's round trip unchanged
// and a re-invocation of the webhook on a stored pod changes nothing.

const QUANTITY = /^(\d+)(?:\.(\d+))?(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
const DECIMAL_EXPONENT: Readonly<Record<string, number>> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const BINARY_POWER: Readonly<Record<string, number>> = { Ki: 1, Mi: 2, Gi: 3, Ti: 4, Pi: 5, Ei: 6 };
const DECIMAL_SUFFIXES: readonly [number, string][] = Object.entries(DECIMAL_EXPONENT)
  .map(([suffix, exponent]): [number, string] => [exponent, suffix])
  .sort((a, b) => b[0] - a[0]);
const BINARY_SUFFIXES: readonly [number, string][] = Object.entries(BINARY_POWER)
  .map(([suffix, power]): [number, string] => [power, suffix])
  .sort((a, b) => b[0] - a[0]);

const NANO = 10n ** 9n;
/** Beyond this (about 9.2 exa) the API server itself saturates; such a value is surely a mistake. */
const MAX_NANO = 2n ** 63n * NANO;

interface Parsed {
  /** The value in nano-units, rounded up as the API server rounds. */
  nano: bigint;
  binary: boolean;
}

/**
 * A non-negative quantity written as digits with an optional fraction and an SI (`m`, `k`, `M`, ...)
 * or binary (`Ki`, `Mi`, ...) suffix; undefined for anything else.
 */
function parseQuantity(text: string): Parsed | undefined {
  const match = QUANTITY.exec(text);
  if (!match) return undefined;
  const [, whole, fraction = '', suffix = ''] = match;
  let numerator = BigInt(whole! + fraction) * NANO;
  let denominator = 10n ** BigInt(fraction.length);
  const power = BINARY_POWER[suffix];
  if (power !== undefined) numerator *= 1024n ** BigInt(power);
  else {
    const exponent = DECIMAL_EXPONENT[suffix]!;
    if (exponent >= 0) numerator *= 10n ** BigInt(exponent);
    else denominator *= 10n ** BigInt(-exponent);
  }
  const nano = (numerator + denominator - 1n) / denominator;
  return nano > MAX_NANO ? undefined : { nano, binary: power !== undefined };
}

/** The value in nano-units, for comparing quantities. */
export function quantityNano(text: string): bigint | undefined {
  return parseQuantity(text)?.nano;
}

/** The text the API server stores for this quantity, or undefined if it is not one (see parseQuantity). */
export function canonicalQuantity(text: string): string | undefined {
  const parsed = parseQuantity(text);
  if (!parsed) return undefined;
  const { nano, binary } = parsed;
  if (nano === 0n) return '0';
  // Binary suffixes survive only for whole values of at least 1024; anything else is shown in SI.
  if (binary && nano % NANO === 0n && nano / NANO >= 1024n) {
    const value = nano / NANO;
    for (const [p, binarySuffix] of BINARY_SUFFIXES) {
      const unit = 1024n ** BigInt(p);
      if (value % unit === 0n) return `${value / unit}${binarySuffix}`;
    }
    return String(value);
  }
  for (const [exponent, decimalSuffix] of DECIMAL_SUFFIXES) {
    const unit = 10n ** BigInt(exponent + 9);
    if (nano % unit === 0n) return `${nano / unit}${decimalSuffix}`;
  }
  return undefined; // unreachable: 1n divides everything
}
