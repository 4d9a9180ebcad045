// The code blocks of the docs, read by the tests that run them as written: so a documented example
// or command cannot drift from what works.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');

/** Every ```<language> block of a file of the repository (docs/x.md), its body as written. */
export async function docBlocks(file: string, language: string): Promise<string[]> {
  const text = await readFile(path.join(REPO, file), 'utf8');
  return [...text.matchAll(new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\``, 'gm'))].map((match) => match[1]!);
}

/** The one ```<language> block of the file whose first line is `# <name>` (a file the example is). */
export async function docBlockNamed(file: string, language: string, name: string): Promise<string> {
  const block = (await docBlocks(file, language)).find((body) => body.startsWith(`# ${name}`) && !/[\w.-]/.test(body.charAt(name.length + 2)));
  if (!block) throw new Error(`${file} has no ${language} block that starts with "# ${name}"`);
  return block;
}

/** The languages of blocks a reader runs or applies: each must say whether a test runs it (documentedCommandBlocks). */
export const COMMAND_LANGUAGES = new Set(['sh', 'bash', 'shell', 'console', 'yaml']);

/** Where a command block stands, from the HTML comment just above it: run by a test, or not run and why. */
export type BlockMarker = { runsIn: string } | { notRun: string } | undefined;

export interface FencedBlock {
  /** The repository's file, e.g. docs/operations.md. */
  file: string;
  /** The line of the opening fence, from 1. */
  line: number;
  /** The fence's info string ('' when it has none). */
  language: string;
  /** The body as a reader copies it: the fence's own indentation (a block in a list) removed. */
  body: string;
  marker: BlockMarker;
}

const FENCE = /^(\s*)```(\S*)\s*$/;
const COMMENT = /^\s*<!--(.*?)-->\s*$/;

/** The marker among the HTML comments directly above a fence: `<!-- runs in test/e2e/x.test.ts -->` or `<!-- not run: why -->`. */
function markerAbove(lines: string[], fence: number): BlockMarker {
  for (let i = fence - 1; i >= 0; i--) {
    const comment = COMMENT.exec(lines[i]!)?.[1]?.trim();
    if (comment === undefined) return undefined;
    const runsIn = /^runs in (\S+)$/.exec(comment)?.[1];
    if (runsIn) return { runsIn };
    const notRun = /^not run: (.+)$/.exec(comment)?.[1];
    if (notRun) return { notRun };
  }
  return undefined;
}

/** Every fenced block of a markdown file of the repository, with the marker above it. */
export async function fencedBlocks(file: string): Promise<FencedBlock[]> {
  const lines = (await readFile(path.join(REPO, file), 'utf8')).split('\n');
  const blocks: FencedBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const end = lines.findIndex((line, j) => j > i && /^\s*```\s*$/.test(line));
    if (end < 0) throw new Error(`${file}:${i + 1}: a fenced block that never closes`);
    const indent = open[1]!.length;
    const body = lines.slice(i + 1, end).map((line) => line.slice(Math.min(indent, line.length - line.trimStart().length)));
    blocks.push({ file, line: i + 1, language: open[2]!, body: body.map((line) => `${line}\n`).join(''), marker: markerAbove(lines, i) });
    i = end;
  }
  return blocks;
}

/** The markdown the inventory covers: README.md, docs/*.md and each example's README. */
export async function documentationFiles(): Promise<string[]> {
  const docs = (await readdir(path.join(REPO, 'docs'))).filter((name) => name.endsWith('.md')).sort();
  const examples = (await readdir(path.join(REPO, 'manifests/examples'), { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
  return ['README.md', ...docs.map((name) => `docs/${name}`), ...examples.map((name) => `manifests/examples/${name}/README.md`)];
}

/** The command blocks of the docs a test file says it runs (`<!-- runs in <that file> -->`). */
export async function blocksRunIn(testFile: string): Promise<FencedBlock[]> {
  const relative = path.relative(REPO, testFile);
  const all = await Promise.all((await documentationFiles()).map((file) => fencedBlocks(file)));
  return all.flat().filter((block) => block.marker && 'runsIn' in block.marker && block.marker.runsIn === relative);
}
