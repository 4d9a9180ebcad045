// One HTTP/2 load run with h2load (nghttp2's load generator, in C: a few µs of CPU per request
// where Node's own http2 client spends 4 to 10 times as much on the same two cores): N connections,
// M concurrent streams on each, every stream sending its next request as soon as the last one was
// answered, for a fixed time. h2load offers only h2 in ALPN here, so it never falls back to
// HTTP/1.1; it presents no client certificate, so a run authenticates with a bearer token.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { get } from 'node:https';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LOAD_GENERATOR, NothingSucceeded, type LoadStats, type Workload } from './load.js';
import { childrenCpuSeconds } from './processes.js';
import { summarise } from './stats.js';

export const H2LOAD = 'h2load';

/** What `npm run bench` says when h2load is not installed. */
export const H2LOAD_MISSING =
  "h2load (nghttp2's HTTP/2 load generator) is not installed: the overhead section's HTTP/2 rows need it. " +
  'Install it with `apt-get install nghttp2-client` (Debian, Ubuntu) or `brew install nghttp2` (macOS), or leave those rows out with --no-http2.';

/** Stops before anything starts when h2load is not there, saying how to install it. */
export function assertH2loadInstalled(): void {
  if (spawnSync(H2LOAD, ['--version'], { stdio: 'ignore' }).error) throw new Error(H2LOAD_MISSING);
}

export interface H2Shape {
  connections: number;
  /** Concurrent streams on each connection. */
  streams: number;
}

export interface H2Run extends H2Shape {
  /** https://host:port */
  base: string;
  workload: Workload;
  bearer: string;
  seconds: number;
  /** The length of every answer's body, when it is known (one object read again and again). */
  bodyBytes?: number;
}

/** The totals h2load prints at the end of a run. */
export interface H2Summary {
  protocol: string;
  seconds: number;
  started: number;
  done: number;
  /** Requests that got no answer: the stream or its connection failed, or timed out. */
  errored: number;
  /** Bytes of the responses' bodies (DATA frames), those still arriving when the time was up included. */
  dataBytes: number;
}

export interface LoggedResponse {
  status: number;
  micros: number;
}

const DURATION_UNITS: Record<string, number> = { s: 1, ms: 1e-3, us: 1e-6 };

function field(output: string, pattern: RegExp, what: string): RegExpExecArray {
  const match = pattern.exec(output);
  if (!match) throw new Error(`h2load's output has no ${what}: ${output.slice(-500)}`);
  return match;
}

export function parseH2loadSummary(output: string): H2Summary {
  const protocol = /^Application protocol: (\S+)$/m.exec(output)?.[1] ?? 'none';
  const finished = field(output, /^finished in ([\d.]+)(s|ms|us),/m, 'finishing time');
  const requests = field(output, /^requests: \d+ total, (\d+) started, (\d+) done, \d+ succeeded, \d+ failed, (\d+) errored, (\d+) timeout$/m, 'request counts');
  const traffic = field(output, /^traffic: .*, \S+ \((\d+)\) data$/m, 'traffic');
  const count = (i: number) => Number(requests[i]);
  return {
    protocol,
    seconds: Number(finished[1]) * DURATION_UNITS[finished[2]!]!,
    started: count(1),
    done: count(2),
    errored: count(3) + count(4),
    dataBytes: Number(traffic[1]),
  };
}

/** h2load's --log-file: one line per answered request, start (µs since the epoch), status, µs to the end of the response. */
export function parseRequestLog(text: string): LoggedResponse[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const [, status, micros] = line.split('\t');
      if (status === undefined || micros === undefined) throw new Error(`h2load's request log: cannot read the line ${JSON.stringify(line)}`);
      return { status: Number(status), micros: Number(micros) };
    });
}

/**
 * The body check: the bodies of the answered requests add up to that many times the object's length,
 * give or take the partial bodies of the requests still under way when the time was up.
 */
export function bodyLengthMismatch(summary: H2Summary, ok: number, bodyBytes: number | undefined): LoadStats['bodyLengthMismatch'] {
  if (bodyBytes === undefined || ok !== summary.done) return undefined; // other answers' bodies count in the total too
  const extra = summary.dataBytes - ok * bodyBytes;
  if (extra >= 0 && extra <= (summary.started - summary.done) * bodyBytes) return undefined;
  return { expectedBytes: ok * bodyBytes, receivedBytes: summary.dataBytes };
}

/** A run's figures in the shape of an autocannon run's: only answers of 200 are successes. */
export function h2LoadStats(name: string, summary: H2Summary, responses: readonly LoggedResponse[], bodyBytes?: number): LoadStats {
  const latencies: number[] = [];
  const non2xx: Record<string, number> = {};
  for (const { status, micros } of responses) {
    if (status === 200) latencies.push(micros / 1000);
    else non2xx[status] = (non2xx[status] ?? 0) + 1;
  }
  if (latencies.length === 0) throw new NothingSucceeded(`${name}: nothing succeeded over HTTP/2 (answers other than 200: ${JSON.stringify(non2xx)}; ${summary.errored} errors)`);
  const mismatch = bodyLengthMismatch(summary, latencies.length, bodyBytes);
  return {
    rps: latencies.length / summary.seconds,
    latency: summarise(latencies),
    requests: responses.length,
    non2xx,
    errors: summary.errored,
    ...(mismatch ? { bodyLengthMismatch: mismatch } : {}),
  };
}

export function h2loadArgs(run: H2Run, logFile: string): string[] {
  return [
    `--clients=${run.connections}`,
    `--max-concurrent-streams=${run.streams}`,
    '--threads=1',
    `--duration=${Math.round(run.seconds * 1000)}ms`,
    '--npn-list=h2',
    '--header=accept: application/json',
    `--header=authorization: Bearer ${run.bearer}`,
    `--log-file=${logFile}`,
    `${run.base}${run.workload.path}`,
  ];
}

function runH2load(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(H2LOAD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new Error(H2LOAD_MISSING) : err));
    child.once('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`h2load exited with code ${code}: ${output.slice(-500)}`))));
  });
}

/** One run, with h2load's own CPU time per request (it is this process's only child that ends meanwhile). */
export async function runH2Load(run: H2Run): Promise<LoadStats> {
  if (run.workload.maxPages || run.workload.method === 'POST') throw new Error(`${run.workload.name}: the HTTP/2 runs read one path again and again`);
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-h2load-'));
  try {
    const logFile = path.join(dir, 'requests.tsv');
    const cpuBefore = childrenCpuSeconds();
    const summary = parseH2loadSummary(await runH2load(h2loadArgs(run, logFile)));
    const generatorSeconds = childrenCpuSeconds() - cpuBefore;
    if (summary.protocol !== 'h2') throw new Error(`${run.base}: h2load negotiated ${summary.protocol}, not h2`);
    const stats = h2LoadStats(run.workload.name, summary, parseRequestLog(await readFile(logFile, 'utf8').catch(() => '')), run.bodyBytes);
    stats.cpuMicrosPerRequest = { [LOAD_GENERATOR]: (generatorSeconds * 1e6) / Math.max(1, stats.requests) };
    return stats;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The protocol a server picks when a client offers h2 and http/1.1 in ALPN, as client-go does; 'none' when it picks none. */
export function negotiatedProtocol(base: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port), servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'], rejectUnauthorized: false }, () => {
      const protocol = socket.alpnProtocol;
      socket.destroy();
      resolve(protocol || 'none');
    });
    socket.once('error', reject);
  });
}

/** The length of the body one GET answers with (to check every HTTP/2 run's bodies against); https is not verified. */
export function bodyLengthOf(url: string, bearer: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = get(url, { headers: { accept: 'application/json', authorization: `Bearer ${bearer}` }, rejectUnauthorized: false, agent: false }, (res) => {
      let length = 0;
      res.on('data', (chunk: Buffer) => (length += chunk.length));
      res.once('end', () => (res.statusCode === 200 ? resolve(length) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
    });
    req.once('error', reject);
  });
}
