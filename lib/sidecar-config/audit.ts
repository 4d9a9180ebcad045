// The sidecar's audit options, part of its configuration schema (options.ts).
import * as z from 'zod';
import { readFileSync } from 'node:fs';
import { duration, envName, flagName, int, oneOf, option, path, type ValueType } from '../config.js';
import { KubeconfigError, loadWebhookKubeconfig } from '../webhook-kubeconfig.js';
import { AuditPolicy, AuditPolicyError } from './audit-policy.js';

export const SINK_NAMES = ['stdout', 'file', 'webhook'] as const;
export type SinkName = (typeof SINK_NAMES)[number];

/** What a buffering sink does when full: hold new requests back, or drop new events. */
export const OVERFLOW_MODES = ['block', 'drop'] as const;
export type OverflowMode = (typeof OVERFLOW_MODES)[number];

function sinkListSchema() {
  return z
    .array(z.enum(SINK_NAMES, { error: `is not a sink (${SINK_NAMES.join(', ')})` }), { error: 'is not a list of sinks' })
    .min(1, { error: 'must name at least one sink' });
}

/** A list of sink names: comma-separated in a flag or variable, a YAML list in the file. */
function sinkList(): ValueType<ReturnType<typeof sinkListSchema>> {
  return {
    name: `list of ${SINK_NAMES.map((name) => `\`${name}\``).join(', ')}`,
    placeholder: 'a,b,...',
    schema: sinkListSchema(),
    list: true,
    standalone: false,
    fromText: (text) => text.split(',').map((item) => item.trim()).filter((item) => item !== ''),
    choices: SINK_NAMES,
  };
}

export const auditOptions = {
  auditPolicyFile: option(path(), {
    description:
      "The audit policy, in the API server's audit.k8s.io/v1 Policy format (the file given to --audit-policy-file); without it every request is audited at Metadata level.",
  }),
  auditSinks: option(sinkList(), { default: ['stdout'], description: 'Where audit events go: any of stdout (JSON lines), file and webhook.', example: 'file,webhook' }),
  auditFilePath: option(path(), { description: 'The file the file sink writes JSON lines to (mode 0600).', example: '/var/log/chaperone/audit.log' }),
  auditFileMaxSize: option(int({ min: 1 }), { default: 100, description: 'The size in MiB at which the audit file is rotated.' }),
  auditFileMaxBackups: option(int({ min: 0 }), { default: 5, description: 'How many rotated audit files (<path>.1 newest, <path>.2, ...) are kept.' }),
  auditWebhookConfigFile: option(path(), {
    description: "A kubeconfig naming the webhook that receives EventList batches, read by the API server's rules (token, tokenFile, client certificates, exec plugins, basic auth; docs/audit.md), as for its --audit-webhook-config-file.",
  }),
  auditWebhookBatchMaxSize: option(int({ min: 1 }), { default: 400, description: 'The most events sent to the webhook in one EventList.' }),
  auditWebhookBatchMaxWait: option(duration(), { default: '5s', description: 'How long an event waits for others to fill its batch before the batch is sent anyway.' }),
  auditWebhookBufferSize: option(int({ min: 1 }), { default: 10000, description: 'How many events wait at most while the webhook is slow or away.' }),
  auditWebhookOverflow: option(oneOf(OVERFLOW_MODES), {
    default: 'block',
    description: 'When the webhook buffer is full: block holds new requests back until there is room (no event is lost); drop drops new events, counting and logging each one.',
  }),
  auditWebhookInitialBackoff: option(duration(), {
    default: '1s',
    description: 'How long the first retry of a batch the webhook did not take waits; each further retry waits twice as long, up to 30s.',
  }),
  auditFlushTimeout: option(duration(), {
    default: '4s',
    description: 'On shutdown, how long buffered events may take to reach the webhook, or a slow reader of standard output; what is left then is counted as dropped.',
  }),
  auditBodyLimit: option(int({ min: 1024 }), {
    default: 256 * 1024,
    description: 'The largest request or response body, in bytes, an event at Request or RequestResponse level records; a larger one is left out, and the event says so.',
  }),
};

export interface AuditConfig {
  auditPolicyFile: string | undefined;
  auditSinks: SinkName[];
  auditFilePath: string | undefined;
  auditFileMaxSize: number;
  auditFileMaxBackups: number;
  auditWebhookConfigFile: string | undefined;
  auditWebhookBatchMaxSize: number;
  auditWebhookBatchMaxWait: number;
  auditWebhookBufferSize: number;
  auditWebhookOverflow: OverflowMode;
  auditWebhookInitialBackoff: number;
  auditFlushTimeout: number;
  auditBodyLimit: number;
  podName: string | undefined;
  podNamespace: string | undefined;
}

const howToSet = (key: string) => `set it with ${flagName(key)}, ${envName(key)} or "${key}" in the config file`;

/**
 * What the per-option checks cannot see: a sink without its destination, a destination without its
 * sink, a policy or webhook kubeconfig that cannot be used (read now, so that a bad one is a refusal
 * naming the file before anything runs with it).
 */
export function auditConfigProblems(config: AuditConfig): string[] {
  const problems: string[] = [];
  const pairs: [SinkName, keyof AuditConfig][] = [
    ['file', 'auditFilePath'],
    ['webhook', 'auditWebhookConfigFile'],
  ];
  for (const [sink, key] of pairs) {
    const enabled = config.auditSinks.includes(sink);
    if (enabled && config[key] === undefined) problems.push(`${key}: required when auditSinks includes ${sink}; ${howToSet(key)}`);
    if (!enabled && config[key] !== undefined) problems.push(`${key}: set, but auditSinks does not include ${sink}; add it (${flagName('auditSinks')}) or leave ${key} unset`);
  }
  if (config.auditPolicyFile !== undefined) problems.push(...fileProblems('auditPolicyFile', () => readAuditPolicy(config.auditPolicyFile!)));
  if (config.auditWebhookConfigFile !== undefined) problems.push(...fileProblems('auditWebhookConfigFile', () => loadWebhookKubeconfig(config.auditWebhookConfigFile!).close()));
  return problems;
}

/** The policy file as the audit reads it. */
export function readAuditPolicy(file: string): AuditPolicy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AuditPolicyError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return AuditPolicy.parse(text, file);
}

function fileProblems(key: keyof AuditConfig, read: () => unknown): string[] {
  try {
    read();
    return [];
  } catch (err) {
    if (!(err instanceof AuditPolicyError) && !(err instanceof KubeconfigError)) throw err;
    return err.message.split('\n').map((problem) => `${key}: ${problem}`);
  }
}
