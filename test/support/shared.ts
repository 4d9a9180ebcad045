// One control plane per test run: started by the first suite that asks, stopped when mocha ends.
import { startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';

// Kept on globalThis, not in a module variable: mocha may load this module once through require and
// once through import (tsx serves both), and both must see the same control plane.
const KEY = Symbol.for('chaperone.test.sharedControlPlane');
const registry = globalThis as typeof globalThis & { [KEY]?: Promise<ControlPlane> };

export function sharedControlPlane(): Promise<ControlPlane> {
  registry[KEY] ??= startControlPlane();
  return registry[KEY];
}

export async function stopSharedControlPlane(): Promise<void> {
  const pending = registry[KEY];
  if (!pending) return;
  delete registry[KEY];
  try {
    await (await pending).stop();
  } catch {
    // it never started: startControlPlane cleaned up after itself and its error was reported
  }
}
