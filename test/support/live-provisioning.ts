// What a labelled namespace lacks as the API server has it right now (the check chaperone doctor
// makes, object by object), rather than as an injector's caches have it: a test that deletes or
// changes something and waits for it to be put back must not take a cache that has not seen the
// change yet for the repair.
import { provisioningNames } from '../../injector/controller.js';
import { checkProvisioning, type ProvisioningStatus } from '../../injector/provision/readiness.js';
import type { AdminClients } from '../../local-cluster/kube.js';
import type { InjectorInstallation } from '../../local-cluster/provisioned.js';

export function liveProvisioningStatus(installation: InjectorInstallation, clients: AdminClients): (namespace: string) => Promise<ProvisioningStatus> {
  const names = provisioningNames(installation.config());
  return (namespace) => checkProvisioning(clients.api, names, namespace);
}
