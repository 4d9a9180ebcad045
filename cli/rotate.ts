// chaperone rotate: starts the rotation of one of the injector's CAs (injector/rotate.ts), with the
// person's kubeconfig as kubectl reads it. The running injector does the rest (docs/operations.md,
// "Rotating a CA").
import { coreV1 } from '../lib/kube-api/resources.js';
import { rotateCa } from '../injector/rotate.js';
import { CA_KINDS, CA_SECRET, type CaKind } from '../injector/provision/names.js';
import { statusCode } from '../injector/provision/kube.js';
import { apiErrorMessage, injectorConfigFrom, loadKubeconfig, unreachable, type ClusterOptions, type InjectorOptions } from './cluster.js';
import { kubeApiOf } from './kube-api.js';

export interface RotateOptions extends ClusterOptions, InjectorOptions {
  /** How long the new CA is trusted before it signs; the injector configuration's when not given. */
  caPropagationDelay?: number;
}

function isKind(text: string): text is CaKind {
  return (CA_KINDS as readonly string[]).includes(text);
}

export async function runRotate(kind: string, options: RotateOptions, out: (line: string) => void = (line) => process.stdout.write(`${line}\n`)): Promise<void> {
  if (!isKind(kind)) throw new Error(`there is no "${kind}" CA: name one of ${CA_KINDS.join(', ')}`);
  const kubeconfig = loadKubeconfig(options);
  const injector = injectorConfigFrom(options);
  const secret = `secrets/${CA_SECRET[kind]} in ${injector.namespace}`;
  const api = kubeApiOf(kubeconfig);
  try {
    const result = await rotateCa({
      core: coreV1(api),
      namespace: injector.namespace,
      kind,
      propagationMs: options.caPropagationDelay ?? injector.caPropagationDelay,
      validityMs: injector.caValidity,
    });
    out(result.message);
  } catch (err) {
    if (statusCode(err) !== undefined) throw new Error(`cannot rotate the ${kind} CA: ${apiErrorMessage(err, `get and update on ${secret}`)}`, { cause: err });
    if (err instanceof Error && /does not exist yet/.test(err.message)) throw err;
    throw unreachable(kubeconfig, err);
  } finally {
    api.close();
  }
}
