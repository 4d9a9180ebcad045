// A 403 as the API server words it, so a person reads the same refusal from either.
import { StatusError } from '../../lib/status.js';
import type { RequestInfo } from './request-info.js';

/** What the API server says when it refuses (responsewriters.forbiddenMessage), so both read the same. */
function forbiddenMessage(username: string, info: RequestInfo): string {
  if (!info.isResourceRequest) return `User ${JSON.stringify(username)} cannot ${info.verb} path ${JSON.stringify(info.path)}`;
  const resource = info.subresource ? `${info.resource}/${info.subresource}` : info.resource;
  const scope = info.namespace ? `in the namespace ${JSON.stringify(info.namespace)}` : 'at the cluster scope';
  return `User ${JSON.stringify(username)} cannot ${info.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(info.apiGroup)} ${scope}`;
}

/** A 403 worded as the API server's own (apierrors.NewForbidden), with the authorizer's reason appended. */
export function forbidden(username: string, info: RequestInfo, reason = ''): StatusError {
  const cause = reason ? `${forbiddenMessage(username, info)}: ${reason}` : forbiddenMessage(username, info);
  if (!info.isResourceRequest) return new StatusError(403, 'Forbidden', `forbidden: ${cause}`, { details: {} });
  const qualified = info.apiGroup ? `${info.resource}.${info.apiGroup}` : info.resource;
  const subject = info.name ? `${qualified} ${JSON.stringify(info.name)}` : qualified;
  return new StatusError(403, 'Forbidden', `${subject} is forbidden: ${cause}`, {
    details: {
      ...(info.name ? { name: info.name } : {}),
      ...(info.apiGroup ? { group: info.apiGroup } : {}),
      kind: info.resource,
    },
  });
}
