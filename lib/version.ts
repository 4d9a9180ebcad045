// chaperone's version: package.json's. scripts/build-artefacts.ts writes it into each bundle, which
// runs without package.json beside it; from the TypeScript, it is read from package.json.
import { readFileSync } from 'node:fs';

declare const CHAPERONE_VERSION: string | undefined;

function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export const VERSION: string = typeof CHAPERONE_VERSION === 'string' ? CHAPERONE_VERSION : packageVersion();
