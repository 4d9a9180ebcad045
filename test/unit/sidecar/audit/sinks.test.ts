// The stdout and file sinks: one JSON object per line, nothing else; the file rotated by size.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileSink } from '../../../../sidecar/audit/sinks/file.js';
import { StdoutSink } from '../../../../sidecar/audit/sinks/stdout.js';
import { capturingLogger } from './helpers.js';

const { log, lines: logged } = capturingLogger();
const id = (n: number) => `id-${String(n).padStart(2, '0')}`;
const event = (n: number) => ({ auditID: id(n), json: JSON.stringify({ kind: 'Event', auditID: id(n), pad: 'x'.repeat(40) }) });
const linesOf = (file: string) => readFileSync(file, 'utf8').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { auditID: string });

/** A FIFO's two ends, neither blocking: what a slow or stuck log reader looks like to the sidecar. */
function fifoIn(dir: string, name: string): { reader: number; writer: number } {
  const fifo = path.join(dir, name);
  execFileSync('mkfifo', [fifo]);
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  return { reader, writer: openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK) };
}

/** An event of 64 KiB: a pipe takes only part of one at a time. */
const big = (n: number) => ({ auditID: id(n), json: JSON.stringify({ kind: 'Event', auditID: id(n), pad: 'x'.repeat(64 * 1024) }) });

describe('sidecar/audit sinks: stdout and file', function () {
  let dir: string;
  beforeEach(function () {
    dir = mkdtempSync(path.join(tmpdir(), 'chaperone-audit-'));
  });
  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('stdout: writes each event as one line and nothing else', async function () {
    const file = path.join(dir, 'stdout');
    const fd = openSync(file, 'w');
    const sink = new StdoutSink(log, 4000, fd);
    for (let n = 0; n < 3; n++) sink.write(event(n));
    await sink.close();
    closeSync(fd);
    assert.deepEqual(linesOf(file).map((e) => e.auditID), ['id-00', 'id-01', 'id-02']);
    assert.deepEqual(sink.stats(), { received: 3, written: 3, dropped: 0, buffered: 0, failures: 0 });
  });

  it('stdout: a reader that falls behind never holds the event loop; new requests wait until it catches up', async function () {
    const { reader, writer } = fifoIn(dir, 'pipe');
    const sink = new StdoutSink(log, 10_000, writer);
    let expected = 0;
    for (let n = 0; n < 40; n++) {
      sink.write(big(n));
      expected += big(n).json.length + 1;
    }
    const full = sink.ready();
    assert.ok(full, 'past its queue limit the sink is full: new requests wait');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(ticks >= 10, `the event loop ran (${ticks} ticks in 200 ms) while nobody read the pipe`);

    let read = 0;
    const received: Buffer[] = [];
    const chunk = Buffer.alloc(1 << 16);
    const readAvailable = () => {
      for (;;) {
        try {
          const n = readSync(reader, chunk);
          if (n === 0) return;
          read += n;
          received.push(Buffer.from(chunk.subarray(0, n)));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return;
          throw err;
        }
      }
    };
    const reading = setInterval(readAvailable, 2);
    await full;
    await sink.close();
    clearInterval(reading);
    clearInterval(timer);
    readAvailable();
    closeSync(writer);
    closeSync(reader);
    assert.equal(read, expected, 'every line reached the reader, whole');
    // Lines go out many to a write, and the pipe takes part of one at a time: each still arrives whole, in order.
    const lines = Buffer.concat(received).toString('utf8').split('\n').filter((line) => line !== '');
    assert.deepEqual(lines.map((line) => (JSON.parse(line) as { auditID: string }).auditID), Array.from({ length: 40 }, (_, n) => id(n)));
    assert.deepEqual(sink.stats(), { received: 40, written: 40, dropped: 0, buffered: 0, failures: 0 });
  });

  it('stdout: a reader that never reads does not hold the shutdown past the flush timeout; what is left is counted as dropped', async function () {
    const { reader, writer } = fifoIn(dir, 'stuck');
    const sink = new StdoutSink(log, 200, writer);
    for (let n = 0; n < 10; n++) sink.write(big(n));
    const started = Date.now();
    await sink.close();
    assert.ok(Date.now() - started < 5000, 'close() returned');
    const stats = sink.stats();
    assert.equal(stats.received, 10);
    assert.ok(stats.dropped > 0 && stats.written + stats.dropped >= 10 - 1, JSON.stringify(stats));
    assert.ok(logged.some((line) => JSON.stringify(line).includes('did not take the last')), 'the loss is logged');
    closeSync(writer);
    closeSync(reader);
  });

  it('file: appends, readable by its owner only, and rotates by size keeping the newest backups', async function () {
    const file = path.join(dir, 'audit.log');
    const lineBytes = event(0).json.length + 1;
    const sink = new FileSink({ path: file, maxBytes: lineBytes * 4, maxBackups: 2 }, log);
    for (let n = 0; n < 14; n++) sink.write(event(n));
    await sink.close();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir).sort(), ['audit.log', 'audit.log.1', 'audit.log.2']);
    assert.deepEqual(linesOf(file).map((e) => e.auditID), ['id-12', 'id-13']);
    assert.deepEqual(linesOf(`${file}.1`).map((e) => e.auditID), ['id-08', 'id-09', 'id-10', 'id-11']);
    assert.deepEqual(linesOf(`${file}.2`).map((e) => e.auditID), ['id-04', 'id-05', 'id-06', 'id-07']);
    assert.equal(sink.stats().written, 14);

    const again = new FileSink({ path: file, maxBytes: lineBytes * 4, maxBackups: 2 }, log);
    again.write(event(14));
    await again.close();
    assert.deepEqual(linesOf(file).map((e) => e.auditID), ['id-12', 'id-13', 'id-14'], 'a restart appends to the current file');
  });

  it('file: keeps no backup when told so', async function () {
    const file = path.join(dir, 'audit.log');
    const sink = new FileSink({ path: file, maxBytes: (event(0).json.length + 1) * 2, maxBackups: 0 }, log);
    for (let n = 0; n < 5; n++) sink.write(event(n));
    await sink.close();
    assert.deepEqual(readdirSync(dir), ['audit.log']);
    assert.deepEqual(linesOf(file).map((e) => e.auditID), ['id-04']);
  });

  it('file: refuses to start on a path it cannot write, and counts a failed write as dropped', async function () {
    assert.throws(() => new FileSink({ path: path.join(dir, 'missing', 'audit.log'), maxBytes: 1000, maxBackups: 1 }, log), /ENOENT/);
    const file = path.join(dir, 'audit.log');
    const sink = new FileSink({ path: file, maxBytes: 10, maxBackups: 1 }, log);
    sink.write(event(0));
    rmSync(dir, { recursive: true, force: true }); // the next rotation cannot rename into a vanished directory
    sink.write(event(1));
    assert.equal(existsSync(file), false);
    assert.deepEqual(sink.stats(), { received: 2, written: 1, dropped: 1, buffered: 0, failures: 1 });
    assert.ok(logged.some((line) => line.auditID === 'id-01' && line.msg === 'could not write an audit event: it is lost'), 'the loss is logged, with the auditID');
    await sink.close();
  });
});
