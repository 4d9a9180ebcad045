// One control plane per test run: started by the first suite that asks, stopped when mocha ends.
import { startControlPlane, type ControlPlane } from './control-plane.js';

let shared: Promise<ControlPlane> | undefined;

export function sharedControlPlane(): Promise<ControlPlane> {
  shared ??= startControlPlane();
  return shared;
}

export async function stopSharedControlPlane(): Promise<void> {
  if (!shared) return;
  const pending = shared;
  shared = undefined;
  try {
    await (await pending).stop();
  } catch {
    // it never started: startControlPlane cleaned up after itself and its error was reported
  }
}
