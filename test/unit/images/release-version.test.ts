// A release changes package.json's version; every other place that names the version must follow,
// or the images, the manifests and --version disagree (the release steps: docs/images.md#releasing).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { DEFAULT_SIDECAR_IMAGE, SIDECAR_REPOSITORY } from '../../../injector/config.js';

const REPO = path.resolve(import.meta.dirname, '../../..');
const read = (file: string) => readFile(path.join(REPO, file), 'utf8');

describe('the version a release sets (package.json)', function () {
  let version: string;

  before(async function () {
    version = (JSON.parse(await read('package.json')) as { version: string }).version;
  });

  it('is package-lock.json\'s too', async function () {
    const lock = JSON.parse(await read('package-lock.json')) as { version: string; packages: Record<string, { version?: string }> };
    assert.equal(lock.version, version);
    assert.equal(lock.packages['']?.version, version);
  });

  it("is the default VERSION of both Dockerfiles, and the tag of their build examples", async function () {
    for (const file of ['Dockerfile.sidecar', 'Dockerfile.injector']) {
      const text = await read(file);
      assert.match(text, new RegExp(`^ARG VERSION=${version.replaceAll('.', '\\.')}$`, 'm'), file);
      assert.deepEqual([...text.matchAll(/:v(\d+\.\d+\.\d+\S*) \.$/gm)].map((m) => m[1]), [version], file);
    }
  });

  it("is the tag of the base's injector image and of the sidecar image the injector puts into pods", async function () {
    const kustomization = YAML.parse(await read('manifests/base/kustomization.yaml')) as { images: { name: string; newTag: string }[] };
    assert.deepEqual(kustomization.images.map((i) => i.newTag), [`v${version}`]);
    const deployment = YAML.parse(await read('manifests/base/deployment.yaml')) as { spec: { template: { spec: { containers: { image: string; args: string[] }[] } } } };
    const container = deployment.spec.template.spec.containers[0]!;
    assert.equal(container.image, `ghcr.io/chaperone-dev/chaperone-injector:v${version}`);
    assert.deepEqual(container.args.filter((arg) => arg.startsWith('--sidecar-image=')), [`--sidecar-image=ghcr.io/chaperone-dev/chaperone-sidecar:v${version}`]);
  });

  it("is the tag of the injector's default sidecar image, which the base and the Helm chart name too", async function () {
    assert.equal(DEFAULT_SIDECAR_IMAGE, `${SIDECAR_REPOSITORY}:v${version}`);
    const deployment = YAML.parse(await read('manifests/base/deployment.yaml')) as { spec: { template: { spec: { containers: { args: string[] }[] } } } };
    assert.deepEqual(deployment.spec.template.spec.containers[0]!.args.filter((arg) => arg.startsWith('--sidecar-image=')), [`--sidecar-image=${DEFAULT_SIDECAR_IMAGE}`]);
    const chart = YAML.parse(await read('charts/chaperone/Chart.yaml')) as { appVersion: string };
    const values = YAML.parse(await read('charts/chaperone/values.yaml')) as { sidecar: { image: { repository: string; tag: string } } };
    // The chart's template: <repository>:<tag>, an empty tag meaning v<appVersion>.
    assert.equal(values.sidecar.image.tag, '');
    assert.equal(`${values.sidecar.image.repository}:v${chart.appVersion}`, DEFAULT_SIDECAR_IMAGE);
  });
});
