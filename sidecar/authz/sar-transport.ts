// SubjectAccessReviews sent under the scoped service account.
import type { Upstream } from '../forward/upstream.js';
import type { SubjectAccessReviewStatus, SubjectAccessReviewTransport } from './review.js';

export function subjectAccessReviewsVia(upstream: Upstream): SubjectAccessReviewTransport {
  return async (body) => {
    const response = await upstream.json('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', body);
    const answer = response.body as { status?: SubjectAccessReviewStatus; message?: string };
    if (response.status !== 201 && response.status !== 200) {
      throw new Error(`SubjectAccessReview was refused (${response.status}): ${answer.message ?? 'no message'}`);
    }
    if (!answer.status) throw new Error('SubjectAccessReview came back without a status');
    return answer.status;
  };
}
