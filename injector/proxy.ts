// What the injector adds to a pod: the sidecar container, its volumes, and the volume that stands in
// for the dashboard's service-account directory. Everything is written out in full, with every
// field the API server would otherwise default, so that the pod the API server stores is exactly what
// the injector produced and a second pass over it changes nothing.
import type { V1Container, V1EnvVar, V1Probe, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { flagName, type Options } from '../lib/config.js';
import { INJECTED_PORTS, listenerPort } from '../lib/sidecar-config/listener.js';
import { annotationOf, PLACEHOLDER_TOKEN_ANNOTATION } from './names.js';
import type { InjectionSettings } from './settings.js';

export const SIDECAR_NAME = 'chaperone';
export const PROXY_HOST = '127.0.0.1';
export const PROXY_PORT = INJECTED_PORTS.proxy;
export const OPS_PORT = INJECTED_PORTS.ops;
/** The name under which the sidecar declares its ops port, which a PodMonitor selects (at most 15 characters). */
export const OPS_PORT_NAME = 'chaperone-ops';
/** The name under which the sidecar declares the installation's extra listener, which a Service targets (docs/listeners.md). */
export const EXTRA_LISTEN_PORT_NAME = 'chaperone-https';

/** Where client-go's in-cluster config looks for the token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const UPSTREAM_DIR = '/var/run/secrets/chaperone/upstream';
const SERVING_DIR = '/var/run/secrets/chaperone/serving';
const IDENTITY_DIR = '/var/run/secrets/chaperone/identity';
const POLICY_DIR = '/var/run/secrets/chaperone/policy';
const INSTALLATION_DIR = '/var/run/chaperone/installation';

/** The projected token of the scoped service account and the cluster's CA: mounted into the sidecar and nowhere else. */
export const TOKEN_VOLUME = 'chaperone-upstream';
const SERVING_VOLUME = 'chaperone-serving';
const IDENTITY_VOLUME = 'chaperone-identity-ca';
const POLICY_VOLUME = 'chaperone-access-policy';
/**
 * Where the sidecar writes the installation configuration it reads from the API server: its own, in
 * memory. What is written there decides who a person is, so no other container may mount it.
 */
export const INSTALLATION_VOLUME = 'chaperone-installation';
/** The stand-in service-account directory of every app container. */
export const API_ACCESS_VOLUME = 'chaperone-api-access';
/** Volume names the injector owns; a pod's own volume of such a name is renamed on first injection. */
export const RESERVED_VOLUMES: readonly string[] = [TOKEN_VOLUME, SERVING_VOLUME, IDENTITY_VOLUME, POLICY_VOLUME, INSTALLATION_VOLUME, API_ACCESS_VOLUME];

/** The keys the provisioning creates in each labelled namespace. */
export const SERVING_CA_KEY = 'serving-ca.crt';
export const IDENTITY_CA_KEY = 'identity-ca.crt';
/**
 * The cluster's CA bundle, what the sidecar verifies the API server with: the injector writes the CA
 * it verifies the API server with itself. Not Kubernetes' kube-root-ca.crt, which anyone with `edit`
 * in the namespace may change.
 */
export const UPSTREAM_CA_KEY = 'upstream-ca.crt';
/** The namespace's access policy (lib/access-policy.ts), which the sidecar enforces too. */
export const ACCESS_POLICY_KEY = 'access-policy.json';

/** What the dashboard's in-cluster config sends as its token. It has no power: nothing accepts it. */
export const PLACEHOLDER_TOKEN = 'chaperone-placeholder-token.this-token-has-no-power';

/** The variables client-go's in-cluster config reads, pointed at the sidecar. */
export const PROXY_ENV: readonly V1EnvVar[] = [
  { name: 'KUBERNETES_SERVICE_HOST', value: PROXY_HOST },
  { name: 'KUBERNETES_SERVICE_PORT', value: String(PROXY_PORT) },
  { name: 'KUBERNETES_SERVICE_PORT_HTTPS', value: String(PROXY_PORT) },
];

/** Files are world-readable inside the one container that mounts them (0644), as the API server defaults. */
const DEFAULT_MODE = 420;
const NON_ROOT = 65532;

interface SidecarFlag {
  /** The sidecar's configuration key (sidecar/config.ts), from which the flag's name follows. */
  key: string;
  value: string | true;
  /** Why it is passed, for the message when the sidecar lacks the flag. */
  because: string;
}

function sidecarFlags(settings: InjectionSettings): SidecarFlag[] {
  const always = 'the injector always passes it';
  const flags: SidecarFlag[] = [
    { key: 'listen', value: `${PROXY_HOST}:${PROXY_PORT}`, because: always },
    { key: 'opsListen', value: `:${OPS_PORT}`, because: always },
    { key: 'tlsCertFile', value: `${SERVING_DIR}/tls.crt`, because: always },
    { key: 'tlsKeyFile', value: `${SERVING_DIR}/tls.key`, because: always },
    // Pinned: left to its default, the upstream would come from KUBERNETES_SERVICE_HOST, which a
    // Service named kubernetes in the namespace sets (the kubelet's service links).
    ...(settings.sidecarUpstream ? [{ key: 'upstream', value: settings.sidecarUpstream, because: always }] : []),
    { key: 'upstreamCaFile', value: `${UPSTREAM_DIR}/ca.crt`, because: always },
    { key: 'tokenFile', value: `${UPSTREAM_DIR}/token`, because: always },
    { key: 'accessPolicyFile', value: `${POLICY_DIR}/${ACCESS_POLICY_KEY}`, because: always },
    { key: 'logLevel', value: settings.sidecarLogLevel, because: always },
  ];
  const authenticators = settings.authenticators;
  const using = (name: string) => `${annotationOf('authenticators')} includes ${name}`;
  if (authenticators.includes('client-cert')) flags.push({ key: 'clientCaFile', value: `${IDENTITY_DIR}/ca.crt`, because: using('client-cert') });
  if (authenticators.includes('oidc')) {
    flags.push({ key: 'oidcIssuerUrl', value: settings.oidcIssuerUrl ?? '', because: using('oidc') });
    flags.push({ key: 'oidcClientId', value: settings.oidcClientId ?? '', because: using('oidc') });
  }
  if (authenticators.includes('cluster-token-review')) flags.push({ key: 'clusterTokenReview', value: true, because: using('cluster-token-review') });
  if (authenticators.includes('anonymous')) flags.push({ key: 'anonymous', value: true, because: using('anonymous') });
  if (settings.readOnly) flags.push({ key: 'readOnly', value: true, because: `${annotationOf('read-only')} is true` });
  if (settings.installationConfig) {
    const because = `the installation configuration ${settings.installationConfig} exists`;
    flags.push({ key: 'installationConfig', value: settings.installationConfig, because });
    flags.push({ key: 'installationConfigDir', value: INSTALLATION_DIR, because });
  }
  if (settings.extraListen) flags.push({ key: 'extraListen', value: settings.extraListen, because: `the installation configuration ${settings.installationConfig ?? ''} sets extraListen` });
  return flags;
}

/** The flags these settings need that the sidecar's configuration does not know (yet). */
export function unsupportedSidecarFlags(settings: InjectionSettings, options: Options): { flag: string; because: string }[] {
  return sidecarFlags(settings)
    .filter(({ key }) => !Object.hasOwn(options, key))
    .map(({ key, because }) => ({ flag: flagName(key), because }));
}

export function sidecarArgs(settings: InjectionSettings): string[] {
  return sidecarFlags(settings).map(({ key, value }) => (value === true ? flagName(key) : `${flagName(key)}=${value}`));
}

function httpProbe(path: string, periodSeconds: number, failureThreshold: number): V1Probe {
  return { httpGet: { path, port: OPS_PORT, scheme: 'HTTP' }, periodSeconds, failureThreshold, successThreshold: 1, timeoutSeconds: 1 };
}

function fieldEnv(name: string, fieldPath: string): V1EnvVar {
  return { name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } };
}

export function sidecarContainer(settings: InjectionSettings): V1Container {
  const mounts: V1VolumeMount[] = [
    { name: TOKEN_VOLUME, mountPath: UPSTREAM_DIR, readOnly: true },
    { name: SERVING_VOLUME, mountPath: SERVING_DIR, readOnly: true },
    { name: POLICY_VOLUME, mountPath: POLICY_DIR, readOnly: true },
  ];
  if (settings.authenticators.includes('client-cert')) mounts.push({ name: IDENTITY_VOLUME, mountPath: IDENTITY_DIR, readOnly: true });
  if (settings.installationConfig) mounts.push({ name: INSTALLATION_VOLUME, mountPath: INSTALLATION_DIR });
  return {
    name: SIDECAR_NAME,
    image: settings.sidecarImage,
    imagePullPolicy: 'IfNotPresent',
    args: sidecarArgs(settings),
    env: [fieldEnv('CHAPERONE_POD_NAME', 'metadata.name'), fieldEnv('CHAPERONE_POD_NAMESPACE', 'metadata.namespace')],
    // The ops port (health and /metrics), and the installation's extra listener if it sets one; the
    // dashboard's listener is on loopback alone.
    ports: [
      { name: OPS_PORT_NAME, containerPort: OPS_PORT, protocol: 'TCP' },
      ...(settings.extraListen ? [{ name: EXTRA_LISTEN_PORT_NAME, containerPort: listenerPort(settings.extraListen), protocol: 'TCP' }] : []),
    ],
    ...(settings.sidecarMode === 'native' ? { restartPolicy: 'Always' } : {}),
    // The dashboard starts only once the proxy is ready (native sidecars); up to two minutes.
    startupProbe: httpProbe('/readyz', 1, 120),
    readinessProbe: httpProbe('/readyz', 5, 3),
    livenessProbe: httpProbe('/healthz', 10, 3),
    resources: {
      requests: { cpu: settings.cpuRequest, memory: settings.memoryRequest },
      limits: { cpu: settings.cpuLimit, memory: settings.memoryLimit },
    },
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: NON_ROOT,
      runAsGroup: NON_ROOT,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: mounts,
  };
}

/** The sidecar's volumes, and the stand-in service-account directory of the app containers. */
export function injectedVolumes(settings: InjectionSettings): V1Volume[] {
  const volumes: V1Volume[] = [
    {
      name: TOKEN_VOLUME,
      projected: {
        defaultMode: DEFAULT_MODE,
        sources: [
          {
            serviceAccountToken: {
              ...(settings.tokenAudience ? { audience: settings.tokenAudience } : {}),
              expirationSeconds: Math.round(settings.tokenExpiration / 1000),
              path: 'token',
            },
          },
          { configMap: { name: settings.caConfigMap, items: [{ key: UPSTREAM_CA_KEY, path: 'ca.crt' }] } },
        ],
      },
    },
    { name: SERVING_VOLUME, secret: { secretName: settings.servingSecret, defaultMode: DEFAULT_MODE } },
    { name: POLICY_VOLUME, configMap: { name: settings.caConfigMap, items: [{ key: ACCESS_POLICY_KEY, path: ACCESS_POLICY_KEY }], defaultMode: DEFAULT_MODE } },
  ];
  if (settings.authenticators.includes('client-cert')) {
    volumes.push({ name: IDENTITY_VOLUME, configMap: { name: settings.caConfigMap, items: [{ key: IDENTITY_CA_KEY, path: 'ca.crt' }], defaultMode: DEFAULT_MODE } });
  }
  if (settings.installationConfig) volumes.push({ name: INSTALLATION_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '4Mi' } });
  volumes.push({
    name: API_ACCESS_VOLUME,
    projected: {
      defaultMode: DEFAULT_MODE,
      sources: [
        { configMap: { name: settings.caConfigMap, items: [{ key: SERVING_CA_KEY, path: 'ca.crt' }] } },
        {
          downwardAPI: {
            items: [
              { path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
              { path: 'token', fieldRef: { apiVersion: 'v1', fieldPath: `metadata.annotations['${PLACEHOLDER_TOKEN_ANNOTATION}']` } },
            ],
          },
        },
      ],
    },
  });
  return volumes;
}

export const API_ACCESS_MOUNT: V1VolumeMount = { name: API_ACCESS_VOLUME, mountPath: SERVICE_ACCOUNT_DIR, readOnly: true };
