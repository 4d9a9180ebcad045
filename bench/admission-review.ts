// The AdmissionReview the bench sends the injector straight (bench/admission.ts, and
// bench/review-steps.ts in one process): the creation of a dashboard pod as it is written, without
// the defaults the API server would add before calling the webhook.
import { randomUUID } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';

/** A dashboard pod as it would be written before injection. */
export function dashboardPod(): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'dashboard-', labels: { app: 'dashboard' } },
    spec: {
      containers: [
        {
          name: 'dashboard',
          image: 'ghcr.io/headlamp-k8s/headlamp:v0.30.0',
          args: ['-in-cluster', '-plugins-dir=/headlamp/plugins'],
          ports: [{ name: 'http', containerPort: 4466 }],
          readinessProbe: { httpGet: { path: '/', port: 'http' } },
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
        },
      ],
    },
  };
}

export function reviewOf(pod: V1Pod, namespace: string): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: { username: 'bench-admin' },
      object: pod,
      dryRun: false,
    },
  });
}
