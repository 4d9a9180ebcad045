// chaperone doctor: read the facts, judge them, say what was found.
import { injectorConfigFrom, loadKubeconfig, namespaceOf, unreachable, type ClusterOptions, type InjectorOptions } from '../cluster.js';
import { diagnose } from './diagnose.js';
import { exitCode, renderJson, renderText, report } from './findings.js';
import { readFacts } from './read.js';

export interface DoctorOptions extends ClusterOptions, InjectorOptions {
  namespace?: string;
  pod?: string;
  output: 'text' | 'json';
}

/** Writes the report; returns the exit code (0: nothing failed, 1: something did). */
export async function runDoctor(options: DoctorOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const kubeconfig = loadKubeconfig(options);
  const config = injectorConfigFrom(options);
  const namespace = namespaceOf(options.namespace, kubeconfig);
  let facts;
  try {
    facts = await readFacts(kubeconfig, config, { namespace, ...(options.pod !== undefined ? { pod: options.pod } : {}) });
  } catch (err) {
    throw unreachable(kubeconfig, err);
  }
  const result = report(namespace, options.pod, diagnose(facts));
  out.write(options.output === 'json' ? renderJson(result) : renderText(result));
  return exitCode(result);
}
