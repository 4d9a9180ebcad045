// Helm, for the chart's test (charts/chaperone): built from the Go module proxy like the control plane.
import { ensureGoTool } from './go-install.js';

/** The Helm release the chart is rendered, linted and installed with (helm.sh/helm/v4, Go module version). */
export const HELM_VERSION = 'v4.3.2';

/** CHAPERONE_HELM, else the cache beside the control plane's binaries, else built there (once, minutes). */
export function ensureHelm(log: (line: string) => void): Promise<string> {
  return ensureGoTool(
    {
      command: 'helm',
      pkg: 'helm.sh/helm/v4/cmd/helm',
      version: HELM_VERSION,
      envVar: 'CHAPERONE_HELM',
      // What Helm's own Makefile stamps, so `helm version` names the release.
      ldflags: `-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v4/internal/version.metadata=`,
    },
    log,
  );
}
