// The audit recorder as the sidecar's configuration describes it: the policy read, the sinks opened.
import type { Logger } from '../../lib/log.js';
import { Auditor } from './auditor.js';
import { readAuditPolicy, type AuditConfig } from '../../lib/sidecar-config/audit.js';
import { AuditPolicy } from '../../lib/sidecar-config/audit-policy.js';
import { FileSink } from './sinks/file.js';
import type { Sink } from './sinks/sink.js';
import { StdoutSink } from './sinks/stdout.js';
import { loadWebhookKubeconfig } from '../../lib/webhook-kubeconfig.js';
import { webhookDelivery, WebhookSink } from './sinks/webhook.js';

const MIB = 1024 * 1024;
const MAX_BACKOFF_MS = 30_000;

/** Reads the policy and opens the sinks; throws, naming the file, when one cannot be used. */
export function createAuditor(config: AuditConfig & { maxRequestBodyBytes?: number }, log: Logger): Auditor {
  const policy = config.auditPolicyFile ? readAuditPolicy(config.auditPolicyFile) : AuditPolicy.DEFAULT;
  const sinks: Sink[] = [];
  for (const name of new Set(config.auditSinks)) {
    if (name === 'stdout') sinks.push(new StdoutSink(log, config.auditFlushTimeout));
    if (name === 'file') {
      sinks.push(new FileSink({ path: config.auditFilePath!, maxBytes: config.auditFileMaxSize * MIB, maxBackups: config.auditFileMaxBackups }, log));
    }
    if (name === 'webhook') {
      const target = loadWebhookKubeconfig(config.auditWebhookConfigFile!);
      const delivery = webhookDelivery(target);
      const options = {
        batchMaxSize: config.auditWebhookBatchMaxSize,
        batchMaxWaitMs: config.auditWebhookBatchMaxWait,
        bufferSize: config.auditWebhookBufferSize,
        overflow: config.auditWebhookOverflow,
        initialBackoffMs: config.auditWebhookInitialBackoff,
        maxBackoffMs: Math.max(MAX_BACKOFF_MS, config.auditWebhookInitialBackoff),
        flushTimeoutMs: config.auditFlushTimeout,
      };
      sinks.push(new WebhookSink(delivery.deliver, options, log, delivery.close));
      log.info({ server: target.url.origin + target.url.pathname, credentials: target.credentialKinds, overflow: options.overflow }, 'sending audit events to the webhook');
    }
  }
  return new Auditor({ policy, sinks, served: { podName: config.podName, podNamespace: config.podNamespace }, bodyLimit: config.auditBodyLimit, maxRequestBodyBytes: config.maxRequestBodyBytes, log });
}
