// The Dockerfiles read as Docker reads them (there is no engine here to build them): what the
// runtime stage copies is exactly what the build script makes for that image, it runs as the
// numeric non-root user the injected pod asks for, with no shell; and the readers the artefact test
// relies on (Dockerfile, .dockerignore) read as Docker does.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleFiles, imageLibraries, isPermissive, REPO, type BundleName } from '../../../scripts/build-artefacts.js';
import {
  copies,
  dockerignored,
  DISTROLESS_NODE,
  execForm,
  instructions,
  labels,
  numericUser,
  parseDockerfile,
  parseDockerignore,
  readDockerfile,
} from '../../../local-cluster/images.js';
import { DEFAULT_SIDECAR_IMAGE } from '../../../injector/config.js';
import { sidecarContainer } from '../../../injector/proxy.js';
import { resolveSettings } from '../../../injector/settings.js';
import { testConfig } from '../injector/helpers.js';

/**
 * Node's flags: never --enable-source-maps (the map would cost every pod tens of MiB; chaperone
 * symbolise maps a logged trace instead); each image's heap half its container's memory limit, and
 * two malloc arenas (docs/sizing.md).
 */
const IMAGES: { dockerfile: string; bundle: BundleName; title: string; nodeFlags: string[]; env: string[] }[] = [
  { dockerfile: 'Dockerfile.sidecar', bundle: 'sidecar', title: 'chaperone-sidecar', nodeFlags: ['--max-old-space-size-percentage=50', '--expose-gc'], env: ['LD_PRELOAD=/app/libjemalloc.so.2 MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2'] },
  { dockerfile: 'Dockerfile.injector', bundle: 'injector', title: 'chaperone-injector', nodeFlags: ['--max-old-space-size-percentage=50', '--expose-gc'], env: ['MALLOC_ARENA_MAX=2'] },
];

describe('the Dockerfiles', function () {
  let manifest: { version: string; license: string };

  before(async function () {
    manifest = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as typeof manifest;
  });

  for (const image of IMAGES) {
    describe(image.dockerfile, function () {
      it('builds on Node 24 slim with npm ci and the build script CI runs', async function () {
        const { build } = await readDockerfile(image.dockerfile);
        assert.match(build.from, /^node:24(\.[\d.]+)?-(bookworm-)?slim$/);
        const runs = instructions(build, 'RUN').map((run) => run.args);
        assert.deepEqual(runs, ['apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/*', 'npm ci --no-audit --no-fund', 'npm run build:artefacts']);
        const [lockfiles] = copies(build);
        assert.deepEqual(lockfiles?.sources, ['package.json', 'package-lock.json'], 'the lockfiles come first, so npm ci is cached across source changes');
      });

      it('copies exactly the bundle, its source map, its notices and the libraries the build copied for it from the build stage, and runs nothing', async function () {
        const { build, runtime } = await readDockerfile(image.dockerfile);
        assert.equal(runtime.from, 'gcr.io/distroless/nodejs24-debian12:nonroot');
        assert.deepEqual(instructions(runtime, 'RUN'), [], 'the runtime stage has no shell to run anything with');
        const copied = copies(runtime);
        assert.deepEqual(copied.map((copy) => copy.from), [build.name]);
        assert.deepEqual(copied[0]!.sources, [...Object.values(bundleFiles(image.bundle)), ...imageLibraries(image.bundle)].map((file) => `/src/dist/${file}`));
        assert.equal(copied[0]!.dest, '/app/');
        assert.equal(instructions(build, 'WORKDIR').at(-1)?.args, '/src');
      });

      it(`runs the bundle with node ${image.nodeFlags.join(' ') || 'and no flags'}, in exec form, as 65532:65532`, async function () {
        const { runtime } = await readDockerfile(image.dockerfile);
        const entrypoint = instructions(runtime, 'ENTRYPOINT');
        assert.equal(entrypoint.length, 1);
        assert.deepEqual(execForm(entrypoint[0]!), [DISTROLESS_NODE, ...image.nodeFlags, `/app/${bundleFiles(image.bundle).bundle}`]);
        assert.deepEqual(instructions(runtime, 'CMD'), []);
        assert.deepEqual(instructions(runtime, 'ENV').map((env) => env.args), image.env, 'the environment is the image\'s alone: the policy refuses any a pod would give the sidecar');
        assert.deepEqual(numericUser(runtime), { uid: 65532, gid: 65532 });
      });

      it('is labelled with the OCI annotations, its version that of package.json', async function () {
        const { runtime } = await readDockerfile(image.dockerfile);
        const { 'org.opencontainers.image.description': description, ...rest } = labels(runtime);
        assert.ok((description ?? '').length > 20, 'it says what it is');
        assert.deepEqual(rest, {
          'org.opencontainers.image.title': image.title,
          'org.opencontainers.image.version': manifest.version,
          'org.opencontainers.image.revision': 'unknown',
          'org.opencontainers.image.source': 'https://github.com/chaperone-dev/chaperone',
          'org.opencontainers.image.licenses': manifest.license,
          'org.opencontainers.image.base.name': runtime.from,
        });
      });
    });
  }

  it('the injected sidecar runs as the sidecar image user and leaves its ENTRYPOINT to run; the default image is this version', async function () {
    const { runtime } = await readDockerfile('Dockerfile.sidecar');
    const container = sidecarContainer(resolveSettings(testConfig()));
    const user = numericUser(runtime);
    assert.equal(container.securityContext?.runAsUser, user.uid);
    assert.equal(container.securityContext?.runAsGroup, user.gid);
    assert.equal(container.securityContext?.runAsNonRoot, true);
    assert.equal(container.command, undefined);
    assert.ok((container.args ?? []).every((arg) => arg.startsWith('--')), 'only flags: the image names the program');
    assert.equal(DEFAULT_SIDECAR_IMAGE, `ghcr.io/chaperone-dev/chaperone-sidecar:v${manifest.version}`);
  });
});

describe('the Dockerfile reader', function () {
  it('joins continuation lines, skips comments in them, and names stages', function () {
    const stages = parseDockerfile('# c\nARG X=1\nFROM a:1 AS build\nRUN one \\\n  # inside\n  two\nFROM b\nLABEL k="v ${V}" \\\n  l="w"\nARG V=2\n');
    assert.deepEqual(stages.map((stage) => [stage.from, stage.name]), [['a:1', 'build'], ['b', undefined]]);
    assert.deepEqual(instructions(stages[0]!, 'RUN').map((run) => run.args), ['one two']);
    assert.deepEqual(labels(stages[1]!), { k: 'v 2', l: 'w' });
  });

  it('refuses the shell form where exec form is needed, a named user, and a label it cannot read', function () {
    const [stage] = parseDockerfile('FROM x\nENTRYPOINT node /app/x.mjs\nUSER nonroot\nLABEL k=v\n');
    assert.throws(() => execForm(instructions(stage!, 'ENTRYPOINT')[0]!), /shell form/);
    assert.throws(() => numericUser(stage!), /USER is nonroot, not a numeric uid:gid/);
    assert.throws(() => labels(stage!), /cannot read LABEL/);
  });
});

describe('the .dockerignore reader', function () {
  const cases: { patterns: string; file: string; ignored: boolean }[] = [
    { patterns: '*\n!cli', file: 'cli/main.ts', ignored: false },
    { patterns: '*\n!cli', file: 'test/e2e/x.ts', ignored: true },
    { patterns: '*\n!cli/', file: 'cli/doctor/index.ts', ignored: false },
    { patterns: '*\n!scripts/build-artefacts.ts', file: 'scripts/build-artefacts.ts', ignored: false },
    { patterns: '*\n!scripts/build-artefacts.ts', file: 'scripts/gen-config-docs.ts', ignored: true },
    { patterns: '!cli\n*', file: 'cli/main.ts', ignored: true },
    { patterns: 'docs/*.md', file: 'docs/a.md', ignored: true },
    { patterns: 'docs/*.md', file: 'docs/sub/a.md', ignored: false },
    { patterns: '**/*.md', file: 'docs/sub/a.md', ignored: true },
    { patterns: '**/*.md', file: 'README.md', ignored: true },
    { patterns: '/node_modules', file: 'node_modules/zod/index.js', ignored: true },
    { patterns: 'node_modules', file: 'lib/node_modules/x.js', ignored: false },
    { patterns: 'dist?', file: 'dist1/a', ignored: true },
    { patterns: 'a.b', file: 'aXb', ignored: false },
  ];
  for (const { patterns, file, ignored } of cases) {
    it(`${JSON.stringify(patterns)}: ${file} is ${ignored ? 'left out' : 'sent'}`, function () {
      assert.equal(dockerignored(parseDockerignore(patterns), file), ignored);
    });
  }

  it('refuses character classes rather than reading them wrong', function () {
    assert.throws(() => parseDockerignore('[ab].ts'), /character classes/);
  });
});

describe('which licences the images may ship', function () {
  const cases: [string, boolean][] = [
    ['MIT', true],
    ['Apache-2.0', true],
    ['(BSD-3-Clause OR GPL-2.0)', true],
    ['GPL-2.0', false],
    ['MIT AND GPL-3.0', false],
    ['MIT AND ISC', true],
    ['SEE LICENSE IN LICENSE.txt', false],
  ];
  for (const [expression, permissive] of cases) {
    it(`${expression}: ${permissive ? 'yes' : 'no'}`, function () {
      assert.equal(isPermissive(expression), permissive);
    });
  }
});
