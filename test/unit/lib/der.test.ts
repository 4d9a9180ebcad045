import assert from 'node:assert/strict';
import { DerError, element, objectIdentifier, readChildren, readElement, readObjectIdentifier, sequence, Tag, time, unsignedInteger } from '../../../lib/der.js';

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

describe('lib/der', function () {
  it('writes INTEGERs in their shortest form, with a zero octet only before a high bit', function () {
    assert.deepEqual(unsignedInteger(hex('00 00 05')), hex('02 01 05'));
    assert.deepEqual(unsignedInteger(hex('00 80')), hex('02 02 00 80'));
    assert.deepEqual(unsignedInteger(hex('ff')), hex('02 02 00 ff'));
    assert.deepEqual(unsignedInteger(hex('00')), hex('02 01 00'));
  });

  it('writes lengths short below 128 and long from it', function () {
    assert.deepEqual(element(Tag.OCTET_STRING, Buffer.alloc(127)).subarray(0, 2), hex('04 7f'));
    assert.deepEqual(element(Tag.OCTET_STRING, Buffer.alloc(128)).subarray(0, 3), hex('04 81 80'));
    assert.deepEqual(element(Tag.OCTET_STRING, Buffer.alloc(300)).subarray(0, 4), hex('04 82 01 2c'));
  });

  it('writes and reads object identifiers, arcs of several octets included', function () {
    for (const oid of ['1.2.840.113549.1.1.11', '2.5.29.17', '0.9.2342.19200300.100.1.1', '2.999.3']) {
      assert.equal(readObjectIdentifier(readElement(objectIdentifier(oid))), oid);
    }
    assert.deepEqual(objectIdentifier('1.2.840.113549.1.1.11'), hex('06 09 2a 86 48 86 f7 0d 01 01 0b'));
  });

  it('writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280)', function () {
    assert.deepEqual(time(new Date('2049-12-31T23:59:59.900Z')), Buffer.concat([hex('17 0d'), Buffer.from('491231235959Z')]));
    assert.deepEqual(time(new Date('2050-01-01T00:00:00Z')), Buffer.concat([hex('18 0f'), Buffer.from('20500101000000Z')]));
  });

  it('reads what it wrote: each element, its parts, and the bytes a signature covers', function () {
    const written = sequence(objectIdentifier('2.5.4.3'), element(Tag.UTF8_STRING, Buffer.from('zoë')));
    const read = readElement(written, Tag.SEQUENCE);
    assert.deepEqual(read.encoded, written);
    const [oid, value] = readChildren(read);
    assert.equal(readObjectIdentifier(oid!), '2.5.4.3');
    assert.equal(value!.content.toString('utf8'), 'zoë');
  });

  it('refuses what is not DER: indefinite or long-winded lengths, multi-byte tags, truncation, bytes after the end', function () {
    const refused: [string, string][] = [
      ['30 80 00 00', 'indefinite'],
      ['04 81 05 0102030405', 'shortest form'],
      ['04 82 00 80' + '00'.repeat(128), 'shortest form'],
      ['1f 81 01 00', 'multi-byte tag'],
      ['04 05 0102', 'truncated'],
      ['04', 'truncated'],
      ['04 01 00 00', 'after the end'],
      ['04 85 0100000000', 'out of range'],
    ];
    for (const [input, why] of refused) assert.throws(() => readElement(hex(input)), (err: Error) => err instanceof DerError && err.message.includes(why), input);
    assert.throws(() => readChildren(readElement(hex('30 03 04 05 00'))), DerError, 'a part longer than its parent');
    assert.throws(() => readObjectIdentifier(readElement(hex('06 02 80 01'))), DerError, 'an arc with a leading 0x80');
    assert.throws(() => readElement(hex('04 00'), Tag.SEQUENCE), DerError, 'another tag than the one expected');
  });
});
