// Where a V8 CPU profile of the sidecar spent its time (`npm run bench -- --cpu-prof <dir>` writes
// one): self time by source file and by function, the bundle's positions mapped back to the
// TypeScript and the packages through its source map.
//   tsx bench/profile.ts <file.cpuprofile> [--top N]
import { readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { markdownTable } from './markdown.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface Place {
  /** A source file, a package (node_modules/<name>), node:<module>, or a V8 pseudo-frame like (garbage collector). */
  where: string;
  fn: string;
}

/** node_modules/<package> for a package's file (scoped or not), else the path as it is. */
export function sourceGroup(source: string): string {
  const parts = source.split('/');
  const at = parts.lastIndexOf('node_modules');
  if (at === -1) return source;
  const name = parts[at + 1]?.startsWith('@') ? parts.slice(at + 1, at + 3) : parts.slice(at + 1, at + 2);
  return `node_modules/${name.join('/')}`;
}

/** Microseconds of self time per key, largest first. */
export function selfTimes(profile: CpuProfile, keyOf: (node: ProfileNode) => string): [string, number][] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const key = keyOf(byId.get(id)!);
    totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return [...totals].sort((a, b) => b[1] - a[1]);
}

function mapper(): (node: ProfileNode) => Place {
  const maps = new Map<string, SourceMap | undefined>();
  const mapFor = (url: string): SourceMap | undefined => {
    if (!maps.has(url)) {
      let map: SourceMap | undefined;
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${fileURLToPath(url)}.map`, 'utf8')) as SourceMapPayload);
      } catch {
        map = undefined; // not a bundle with a map beside it
      }
      maps.set(url, map);
    }
    return maps.get(url);
  };
  return ({ callFrame }) => {
    const fn = callFrame.functionName || '(anonymous)';
    if (!callFrame.url) return { where: fn.startsWith('(') ? fn : '(native)', fn };
    if (callFrame.url.startsWith('node:')) return { where: callFrame.url, fn };
    const map = callFrame.url.startsWith('file:') ? mapFor(callFrame.url) : undefined;
    const entry = map?.findEntry(callFrame.lineNumber, callFrame.columnNumber);
    if (entry && 'originalSource' in entry) {
      const source = path.relative(process.cwd(), fileURLToPath(new URL(entry.originalSource, callFrame.url)));
      // Node gives the original name too, which its types do not declare.
      const name = (entry as { name?: string }).name ?? fn;
      return { where: source, fn: `${name} (${source}:${entry.originalLine + 1})` };
    }
    return { where: callFrame.url, fn };
  };
}

function report(file: string, top: number): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const place = mapper();
  const cache = new Map<number, Place>();
  const placeOf = (node: ProfileNode) => {
    let found = cache.get(node.id);
    if (!found) cache.set(node.id, (found = place(node)));
    return found;
  };
  const total = profile.timeDeltas.reduce((a, b) => a + b, 0);
  const busy = selfTimes(profile, (node) => placeOf(node).where).filter(([key]) => key !== '(idle)');
  const busyTotal = busy.reduce((a, [, us]) => a + us, 0);
  const rows = (entries: [string, number][]) => entries.slice(0, top).map(([key, us]) => [key, (us / 1000).toFixed(0), ((100 * us) / busyTotal).toFixed(1)]);
  const columns = (title: string) => [{ title }, { title: 'self ms', align: 'right' as const }, { title: '% of busy', align: 'right' as const }];
  const groups = new Map<string, number>();
  for (const [where, us] of busy) groups.set(sourceGroup(where), (groups.get(sourceGroup(where)) ?? 0) + us);
  return [
    `${path.basename(file)}: ${(total / 1e6).toFixed(1)}s profiled, ${(busyTotal / 1e6).toFixed(1)}s busy`,
    markdownTable(columns('where (package or file)'), rows([...groups].sort((a, b) => b[1] - a[1]))),
    markdownTable(columns('function'), rows(selfTimes(profile, (node) => placeOf(node).fn).filter(([key]) => key !== '(idle)'))),
  ].join('\n\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  new Command('profile')
    .argument('<file>', 'a .cpuprofile written by node --cpu-prof')
    .option('--top <n>', 'rows per table', (value) => Number(value), 25)
    .action((file: string, options: { top: number }) => {
      process.stdout.write(`${report(file, options.top)}\n`);
    })
    .parse();
}
