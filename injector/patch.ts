// The JSONPatch (RFC 6902) that turns one JSON document into another. Objects are compared key by
// key; arrays that differ are replaced whole, which keeps every operation's path valid without index
// arithmetic and creates arrays the pod did not have. And its JSON, with the values every patch
// shares serialised once.
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

/** Equal as JSON documents: a property whose value is undefined is as absent as JSON.stringify makes it. */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]));
  }
  if (!isObject(a) || !isObject(b)) return false;
  const keys = definedKeys(a);
  return keys.length === definedKeys(b).length && keys.every((key) => jsonEqual(a[key], own(b, key)));
}

function definedKeys(object: Record<string, unknown>): string[] {
  return Object.keys(object).filter((key) => object[key] !== undefined);
}

/** The object's own property (never one of Object.prototype's: a label may be called "constructor"). */
function own(object: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

// Two objects are compared key by key, not first as wholes: the injected pod shares most of its
// objects with the pod the review carries, and those are skipped by identity.
function diff(before: unknown, after: unknown, path: string, ops: PatchOperation[]): void {
  if (before === after) return;
  if (!isObject(before) || !isObject(after)) {
    if (!jsonEqual(before, after)) ops.push({ op: 'replace', path, value: after });
    return;
  }
  for (const key of definedKeys(before)) {
    if (own(after, key) === undefined) ops.push({ op: 'remove', path: `${path}/${escapePointer(key)}` });
  }
  for (const key of definedKeys(after)) {
    const was = own(before, key);
    if (was === after[key]) continue;
    const at = `${path}/${escapePointer(key)}`;
    if (was === undefined) ops.push({ op: 'add', path: at, value: after[key] });
    else diff(was, after[key], at, ops);
  }
}

/**
 * Both documents must be JSON values once serialised: no functions or cycles, and undefined only as
 * the value of a property, which counts as absent (the pod the injector builds has such properties;
 * serialising the patch drops them, as it would the document's). The root must be an object.
 */
export function jsonPatch(before: Record<string, unknown>, after: Record<string, unknown>): PatchOperation[] {
  const ops: PatchOperation[] = [];
  diff(before, after, '', ops);
  return ops;
}

/** The JSON of what serialiseOnce was given, by identity. */
const serialised = new WeakMap<object, string>();

function deepFreeze(value: unknown): void {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return;
  for (const item of Object.values(value)) deepFreeze(item);
  Object.freeze(value);
}

/**
 * A value that goes into many patches unchanged (the sidecar, the injector's volumes): frozen, so
 * that it cannot change under its JSON, and serialised once for all of them.
 */
export function serialiseOnce<T extends object>(value: T): T {
  deepFreeze(value);
  serialised.set(value, JSON.stringify(value));
  return value;
}

/** JSON.stringify's text, with what serialiseOnce was given taken as serialised, in an operation's value or its list. */
function valueJson(value: unknown): string {
  if (typeof value !== 'object' || value === null) return JSON.stringify(value) ?? 'null';
  const known = serialised.get(value);
  if (known !== undefined) return known;
  if (Array.isArray(value) && value.some((item: unknown) => typeof item === 'object' && item !== null && serialised.has(item))) {
    return `[${value.map(valueJson).join(',')}]`;
  }
  return JSON.stringify(value);
}

/** The patch as JSON: the text JSON.stringify gives operations as jsonPatch makes them (op, path, value). */
export function patchJson(ops: readonly PatchOperation[]): string {
  const texts = ops.map((op) =>
    op.op === 'remove' || op.value === undefined ? JSON.stringify(op) : `{"op":${JSON.stringify(op.op)},"path":${JSON.stringify(op.path)},"value":${valueJson(op.value)}}`,
  );
  return `[${texts.join(',')}]`;
}
