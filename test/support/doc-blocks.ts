// The code blocks of the docs, read by the tests that run them as written: so a documented example
// or command cannot drift from what works.
import { readFile } from 'node:fs/promises';
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
