// The watches section over both protocols: how its event streams are cut into lines, how many
// HTTP/2 connections a fleet needs, and how the report judges and sets out each protocol's run.
import assert from 'node:assert/strict';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { createCA, issueCertificate } from '../../../lib/pki.js';
import { renderReport, targets } from '../../../bench/report.js';
import type { WatchResult, WatchRun, WatchSide } from '../../../bench/results.js';
import { http2Shape, LineSplitter, watchConnections } from '../../../bench/watch-connections.js';
import { benchResults } from './fixtures.js';

const MiB = 1024 * 1024;
const latency = (p50: number, p99: number) => ({ count: 100, mean: p50, p50, p90: p99, p99, max: p99 });
const heap = { heapUsedBytes: 0, heapTotalBytes: 0, externalBytes: 0 };
const side: WatchSide = { openSeconds: 1, delay: latency(1, 2), lastDelivery: latency(1, 2) };

function run(idleMiB: number, openMiB: number, peakMiB: number, over?: WatchSide['http2']): WatchRun {
  const withShape = over ? { ...side, http2: over } : side;
  return {
    direct: withShape,
    through: { ...withShape, proxyCpuMicrosPerEvent: 30 },
    sidecarRssBytes: { idle: idleMiB * MiB, open: openMiB * MiB, peak: peakMiB * MiB },
    sidecarHeap: { idle: heap, open: heap },
  };
}

const watches = (http2?: WatchRun): WatchResult => ({ watches: 1000, updates: 20, ...run(90, 220, 230), ...(http2 ? { http2 } : {}) });

describe('bench/watch-connections', function () {
  it('cuts an event stream into lines, holding a line cut between chunks until it ends', function () {
    const lines = new LineSplitter();
    assert.deepEqual(lines.push('{"type":"MODIFIED"'), []);
    assert.deepEqual(lines.push(',"seq":"1"}\n{"type":'), ['{"type":"MODIFIED","seq":"1"}']);
    assert.deepEqual(lines.push('"ADDED"}\n\n{"a":1}\n'), ['{"type":"ADDED"}', '', '{"a":1}']);
    assert.deepEqual(lines.push(''), []);
  });

  it('spreads the watches over as few HTTP/2 connections as the server allows streams on each', function () {
    assert.deepEqual(http2Shape(1000, 250), { connections: 4, streamsPerConnection: 250 });
    assert.deepEqual(http2Shape(1001, 250), { connections: 5, streamsPerConnection: 250 });
    assert.deepEqual(http2Shape(100, 250), { connections: 1, streamsPerConnection: 100 });
    assert.deepEqual(http2Shape(1000, 1000), { connections: 1, streamsPerConnection: 1000 });
    assert.deepEqual(http2Shape(1000, undefined), { connections: 1, streamsPerConnection: 1000 }, 'no limit announced');
    assert.deepEqual(http2Shape(1000, 0), { connections: 1, streamsPerConnection: 1000 }, 'no limit announced');
  });
});

describe('bench/watch-connections: watches as HTTP/2 streams', function () {
  const ca = createCA({ commonName: 'watch-test-ca' });
  const serving = issueCertificate(ca, { commonName: 'localhost', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const tls = { cert: serving.certPem, key: serving.keyPem };
  let servers: (Http2SecureServer | Server)[] = [];

  async function listening(server: Http2SecureServer | Server): Promise<string> {
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Answers /forbidden 403 and anything else 200 with one line, on at most two streams per connection. */
  function watchServer(sessions: Set<unknown>): Promise<string> {
    const server = createSecureServer({ ...tls, settings: { maxConcurrentStreams: 2 } });
    server.on('session', (session) => sessions.add(session));
    server.on('stream', (stream, headers) => {
      if (headers[':path'] === '/forbidden') return stream.respond({ ':status': 403 }, { endStream: true });
      stream.respond({ ':status': 200 });
      stream.write('{"seq":"1"}\n');
    });
    return listening(server);
  }

  afterEach(async function () {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    servers = [];
  });

  it('spreads the watches over connections of as many streams as the server allows, each answered 200', async function () {
    const sessions = new Set<unknown>();
    const connections = await watchConnections('h2', await watchServer(sessions), { bearer: 't' }, 5);
    try {
      const bodies: Readable[] = await Promise.all(Array.from({ length: 5 }, () => connections.open('/watch')));
      const first = await new Promise<string>((resolve) => bodies[4]!.setEncoding('utf8').once('data', resolve));
      assert.equal(first, '{"seq":"1"}\n');
      assert.deepEqual(connections.shape(), { connections: 3, streamsPerConnection: 2 });
      assert.equal(sessions.size, 3);
    } finally {
      connections.close();
    }
  });

  it('refuses a watch answered other than 200, and a server that does not speak h2, naming it', async function () {
    const connections = await watchConnections('h2', await watchServer(new Set()), {}, 1);
    try {
      await assert.rejects(connections.open('/forbidden'), /a watch was answered 403/);
    } finally {
      connections.close();
    }
    const http1 = await listening(createHttpsServer(tls, (_req, res) => res.end()));
    await assert.rejects(watchConnections('h2', http1, {}, 1), new RegExp(`${http1.replace(/[.]/g, '\\.')}: HTTP/2 connection 1`));
  });
});

describe('bench/report: watches over HTTP/1.1 and HTTP/2', function () {
  it('judges what the watches add to the sidecar at the peak, one row per protocol', function () {
    const rows = targets(benchResults({ watches: watches(run(88, 130, 160, { connections: 4, streamsPerConnection: 250 })) }));
    const http1 = rows.find((r) => r.target === 'sidecar resident memory added by 1000 watches, HTTP/1.1, at the peak');
    const http2 = rows.find((r) => r.target === 'sidecar resident memory added by 1000 watches, HTTP/2, at the peak');
    assert.deepEqual(http1 && { goal: http1.goal, measured: http1.measured, met: http1.met }, { goal: '≤ +80 MiB', measured: '+140.0 MiB (90.0 → 230.0)', met: false });
    assert.deepEqual(http2 && { measured: http2.measured, met: http2.met }, { measured: '+72.0 MiB (88.0 → 160.0)', met: true });
  });

  it('says HTTP/2 was not measured when the run left it out (--no-http2)', function () {
    const rows = targets(benchResults({ watches: watches() }));
    assert.equal(rows.find((r) => r.target.includes('1000 watches, HTTP/2'))?.measured, 'not measured');
    assert.equal(rows.find((r) => r.target.includes('1000 watches, HTTP/1.1'))?.met, false);
  });

  it('sets out the HTTP/2 run in a table of its own, with the connections that carried the watches, and its sidecar in the memory table', function () {
    const http2 = run(88, 130, 160, { connections: 4, streamsPerConnection: 250 });
    http2.direct = { ...side, http2: { connections: 1, streamsPerConnection: 1000 } };
    const report = renderReport(benchResults({ watches: watches(http2) }));
    assert.match(report, /\| 1000 watches, 20 changes +\| +direct \| +through the sidecar \|/);
    assert.match(report, /\| 1000 watches, 20 changes, HTTP\/2 +\| +direct \| +through the sidecar \|/);
    assert.match(report, /\| connections × streams per connection +\| +1 × 1000 \| +4 × 250 \|/);
    assert.equal(report.match(/\| proxy CPU µs per event delivered +\| +\| +30\.0 \|/g)?.length, 2, 'the sidecar\'s CPU per event, each protocol');
    assert.equal(report.match(/connections × streams per connection/g)?.length, 1, 'the HTTP/1.1 table has no such row');
    assert.match(report, /\| another sidecar, idle before its watches each on a connection of its own +\| +90\.0 \|/);
    assert.match(report, /\| another sidecar, idle before its watches over HTTP\/2 \(4 × 250 streams\) +\| +88\.0 \|/);
    assert.match(report, /\| peak with 1000 watches, while events flowed +\| +160\.0 \|/);
  });

  it('names a peer that did not choose h2, instead of a column for it', function () {
    const report = renderReport(benchResults({ watches: watches({ ...run(88, 130, 160, { connections: 4, streamsPerConnection: 250 }), peerProtocol: 'http/1.1' }) }));
    assert.match(report, /Not through the peer: it chose http\/1\.1 when offered h2 and http\/1\.1 in ALPN\./);
    assert.doesNotMatch(report, /through peer/);
  });
});
