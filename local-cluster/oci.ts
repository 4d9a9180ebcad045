// Images without Docker or a registry: a directory written as a one-layer OCI image archive (an OCI
// image layout in a tar) that `ctr images import` loads into the local node's containerd. The sidecar
// and injector images are the runtime stage of their Dockerfile (local-cluster/images.ts lays it out)
// plus what the Dockerfile's base image gives them: Node.js 24 where the distroless image has it, the
// shared libraries it loads, and the passwd entries of root and the non-root user.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO } from '../scripts/build-artefacts.js';
import { DISTROLESS_NODE, environment, execForm, instructions, labels, numericUser, readDockerfile, stageImage } from './images.js';

const run = promisify(execFile);

/** The part of an OCI image configuration a container runtime acts on. */
export interface ImageConfig {
  Entrypoint: string[];
  Cmd?: string[];
  User: string;
  WorkingDir: string;
  Env: string[];
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, Record<string, never>>;
}

export interface OciArchive {
  /** The image reference it is imported as, e.g. ghcr.io/chaperone-dev/chaperone-sidecar:v0.1.0. */
  ref: string;
  file: string;
  config: ImageConfig;
}

const MEDIA = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
};

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The same bytes for the same files: sorted, owned by root, no timestamps. */
async function tarDirectory(dir: string, output: string): Promise<void> {
  await run('tar', ['--create', `--file=${output}`, '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '--format=gnu', '-C', dir, '.']);
}

/** Writes `root` as a one-layer image archive that imports as `ref`. */
export async function writeOciArchive(root: string, ref: string, config: ImageConfig, output: string): Promise<OciArchive> {
  const layout = await mkdtemp(path.join(tmpdir(), 'chaperone-oci-'));
  try {
    const blobs = path.join(layout, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const addBlob = async (mediaType: string, content: Buffer) => {
      const digest = createHash('sha256').update(content).digest('hex');
      await writeFile(path.join(blobs, digest), content);
      return { mediaType, digest: `sha256:${digest}`, size: content.length };
    };
    const layerFile = path.join(layout, 'layer.tar');
    await tarDirectory(root, layerFile);
    const layerDigest = await sha256File(layerFile);
    const { size: layerSize } = await stat(layerFile);
    await run('mv', [layerFile, path.join(blobs, layerDigest)]);
    const layer = { mediaType: MEDIA.layer, digest: `sha256:${layerDigest}`, size: layerSize };
    const imageConfig = { architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: [layer.digest] } };
    const configBlob = await addBlob(MEDIA.config, Buffer.from(JSON.stringify(imageConfig)));
    const manifest = await addBlob(MEDIA.manifest, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.manifest, config: configBlob, layers: [layer] })));
    const tag = ref.slice(ref.lastIndexOf(':') + 1);
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ ...manifest, annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag } }],
    };
    await writeFile(path.join(layout, 'index.json'), JSON.stringify(index));
    await writeFile(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await tarDirectory(layout, output);
    return { ref, file: output, config };
  } finally {
    await rm(layout, { recursive: true, force: true });
  }
}

/** The shared libraries a dynamically linked binary loads, as `ldd` lists them (the loader included). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  return stdout
    .split('\n')
    .map((line) => /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line)?.[1])
    .filter((library): library is string => library !== undefined);
}

/** Node.js 24 as the `node` npm package installs it: the binary the tests and the images run. */
export function nodeBinary(): Promise<string> {
  return realpath(path.join(REPO, 'node_modules', 'node', 'bin', 'node'));
}

async function copyInto(root: string, imagePath: string, from: string, mode: number): Promise<void> {
  const target = path.join(root, imagePath);
  await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
  await copyFile(from, target);
  await chmod(target, mode);
}

/** The image's user in /etc/passwd and /etc/group, as the distroless base has them. */
async function writeUsers(root: string, user: { uid: number; gid: number }): Promise<void> {
  await mkdir(path.join(root, 'etc'), { recursive: true, mode: 0o755 });
  await writeFile(path.join(root, 'etc/passwd'), `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${user.uid}:${user.gid}:nonroot:/home/nonroot:/sbin/nologin\n`, { mode: 0o644 });
  await writeFile(path.join(root, 'etc/group'), `root:x:0:\nnonroot:x:${user.gid}:\n`, { mode: 0o644 });
}

/** The image of one of this repository's Dockerfiles, from the bundles in dist/. */
export async function buildDockerfileImage(dockerfile: string, ref: string, output: string): Promise<OciArchive> {
  const { runtime } = await readDockerfile(dockerfile);
  const staged = await stageImage(dockerfile);
  try {
    const root = staged.local('/');
    const entrypoint = execForm(instructions(runtime, 'ENTRYPOINT').at(-1)!);
    if (entrypoint[0] !== DISTROLESS_NODE) throw new Error(`${dockerfile}: the ENTRYPOINT does not start with ${DISTROLESS_NODE}, where the base image has Node.js`);
    const node = await nodeBinary();
    await copyInto(root, DISTROLESS_NODE, node, 0o755);
    for (const library of await sharedLibraries(node)) await copyInto(root, library, library, 0o755);
    const user = numericUser(runtime);
    await writeUsers(root, user);
    await mkdir(path.join(root, 'tmp'), { recursive: true });
    await chmod(path.join(root, 'tmp'), 0o1777);
    const ports = instructions(runtime, 'EXPOSE').flatMap(({ args }) => args.split(/\s+/)).map((port) => (port.includes('/') ? port : `${port}/tcp`));
    const config: ImageConfig = {
      Entrypoint: entrypoint,
      User: `${user.uid}:${user.gid}`,
      WorkingDir: instructions(runtime, 'WORKDIR').at(-1)?.args ?? '/',
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...Object.entries(environment(runtime)).map(([key, value]) => `${key}=${value}`)],
      Labels: labels(runtime),
      ExposedPorts: Object.fromEntries(ports.map((port) => [port, {}])),
    };
    const cmd = instructions(runtime, 'CMD').map(execForm).at(-1);
    if (cmd) config.Cmd = cmd;
    return await writeOciArchive(root, ref, config, output);
  } finally {
    await staged.remove();
  }
}

/** An image of one static binary at /<name>, its entrypoint, run as `user` (uid:gid). */
export async function buildBinaryImage(binary: string, name: string, ref: string, output: string, user = '65532:65532'): Promise<OciArchive> {
  const root = await mkdtemp(path.join(tmpdir(), 'chaperone-image-'));
  try {
    await chmod(root, 0o755);
    await copyInto(root, `/${name}`, binary, 0o755);
    const config: ImageConfig = { Entrypoint: [`/${name}`], User: user, WorkingDir: '/', Env: ['PATH=/'] };
    return await writeOciArchive(root, ref, config, output);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

export interface ImageFile {
  path: string;
  /** As `tar --list --verbose` shows it, e.g. -rw-r--r--. */
  mode: string;
  uid: number;
  gid: number;
  size: number;
}

/** What an image archive holds: the name it imports as, its configuration and its one layer's files. */
export async function readOciArchive(archive: string): Promise<{ ref: string; config: ImageConfig; files: ImageFile[] }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-oci-read-'));
  try {
    await run('tar', ['--extract', `--file=${archive}`, '-C', dir]);
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    const blob = (digest: string) => path.join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
    const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
    const { config } = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8')) as { config: ImageConfig };
    const { stdout } = await run('tar', ['--list', '--verbose', '--numeric-owner', `--file=${blob(manifest.layers[0]!.digest)}`], { maxBuffer: 64 * 1024 * 1024 });
    const files = stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const [mode, owner, size, , , ...name] = line.split(/\s+/);
        const [uid, gid] = owner!.split('/').map(Number);
        return { path: name.join(' ').replace(/^\.\/?/, '/').replace(/\/$/, '') || '/', mode: mode!, uid: uid!, gid: gid!, size: Number(size) };
      });
    return { ref: index.manifests[0]!.annotations['io.containerd.image.name']!, config, files };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
