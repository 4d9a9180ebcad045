// What kind of request a RequestInfo is, beyond its verb: how the API server treats it.
import type { RequestInfo } from './request-info.js';

/** The API server's long-running requests: never cut by a timeout. */
export function isLongRunning(info: RequestInfo): boolean {
  return info.verb === 'watch' || info.verb === 'proxy' || ['attach', 'exec', 'proxy', 'log', 'portforward'].includes(info.subresource);
}

const CONNECT_SUBRESOURCES_NEEDING_CREATE = new Set(['exec', 'attach', 'portforward']);

/**
 * The second authorization the API server makes: `create` on pods/exec, attach and portforward when
 * they are opened with GET, as WebSocket upgrades are (AuthorizePodWebsocketUpgradeCreatePermission,
 * on since 1.35). Undefined when there is none.
 */
export function compoundCreate(info: RequestInfo): RequestInfo | undefined {
  const needsCreate = info.isResourceRequest && info.apiGroup === '' && info.resource === 'pods' && CONNECT_SUBRESOURCES_NEEDING_CREATE.has(info.subresource);
  return needsCreate && info.verb === 'get' ? { ...info, verb: 'create' } : undefined;
}
