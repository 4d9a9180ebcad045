// The JSONPatch (RFC 6902) that turns one JSON document into another. Objects are compared key by
// key; arrays that differ are replaced whole, which keeps every operation's path valid without index
// arithmetic and creates arrays the pod did not have.
import { isDeepStrictEqual } from 'node:util';

export type PatchOperation =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** A key as a JSON-pointer segment: `chaperone.dev/status` becomes `chaperone.dev~1status`. */
export function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function diff(before: unknown, after: unknown, path: string, ops: PatchOperation[]): void {
  if (isDeepStrictEqual(before, after)) return;
  if (!isObject(before) || !isObject(after)) {
    ops.push({ op: 'replace', path, value: after });
    return;
  }
  for (const key of Object.keys(before)) {
    if (!Object.hasOwn(after, key)) ops.push({ op: 'remove', path: `${path}/${escapePointer(key)}` });
  }
  for (const [key, value] of Object.entries(after)) {
    const at = `${path}/${escapePointer(key)}`;
    if (!Object.hasOwn(before, key)) ops.push({ op: 'add', path: at, value });
    else diff(before[key], value, at, ops);
  }
}

/** Both documents must be JSON values (no undefined, functions or cycles); the root must be an object. */
export function jsonPatch(before: Record<string, unknown>, after: Record<string, unknown>): PatchOperation[] {
  const ops: PatchOperation[] = [];
  diff(before, after, '', ops);
  return ops;
}
