import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { bodyFraming } from '../../../sidecar/forward/framing.js';
import { StatusError } from '../../../lib/status.js';

/** What bodyFraming reads of an HTTP/2 request: its method, headers, and whether HEADERS ended the stream. */
function http2Request(method: string, headers: Record<string, string>, endAfterHeaders: boolean): Http2ServerRequest {
  return { method, headers, stream: { endAfterHeaders } } as unknown as Http2ServerRequest;
}

function http1Request(method: string, headers: Record<string, string>): IncomingMessage {
  return { method, headers } as unknown as IncomingMessage;
}

function refused(framing: () => unknown): StatusError {
  try {
    framing();
  } catch (err) {
    if (err instanceof StatusError) return err;
    throw err;
  }
  assert.fail('not refused');
}

describe('sidecar/forward/framing', function () {
  describe('HTTP/1.1: as the parser delimited the body', function () {
    it('reads a length, chunked, or nothing', function () {
      assert.equal(bodyFraming(http1Request('POST', { 'content-length': '5' })), 'length');
      assert.equal(bodyFraming(http1Request('POST', { 'transfer-encoding': 'chunked' })), 'chunked');
      assert.equal(bodyFraming(http1Request('POST', {})), 'none');
    });

    it('refuses another transfer coding and a body on GET', function () {
      assert.equal(refused(() => bodyFraming(http1Request('POST', { 'transfer-encoding': 'gzip, chunked' }))).code, 400);
      assert.equal(refused(() => bodyFraming(http1Request('GET', { 'content-length': '5' }))).code, 400);
    });
  });

  describe('HTTP/2: the frames delimit the body', function () {
    it('has no body when HEADERS ended the stream, a length when one is declared, and otherwise reads it whole', function () {
      assert.equal(bodyFraming(http2Request('POST', {}, true)), 'none');
      assert.equal(bodyFraming(http2Request('POST', { 'content-length': '12' }, false)), 'length');
      assert.equal(bodyFraming(http2Request('POST', {}, false)), 'chunked');
      assert.equal(bodyFraming(http2Request('PATCH', { 'content-length': '0' }, false)), 'chunked');
    });

    it('sends a GET or HEAD on without a body (data frames dropped), and refuses one that declares a body', function () {
      assert.equal(bodyFraming(http2Request('GET', {}, false)), 'none');
      assert.equal(bodyFraming(http2Request('HEAD', {}, true)), 'none');
      assert.equal(refused(() => bodyFraming(http2Request('GET', { 'content-length': '5' }, false))).code, 400);
    });
  });
});
