// Client certificates with odd subjects, the real API server as the oracle. The sidecar is given the
// control plane's own CA as its identity CA, so one certificate can be shown to both: "who am I?"
// (a SelfSubjectReview) asked of the API server directly, and through the sidecar. The sidecar may
// refuse a certificate the API server would take (the guard, names no header can carry, a missing
// clientAuth usage), but whenever it lets a certificate through, the API server must know that
// certificate as the very same user with the very same groups and uid (the subject's uid attribute,
// 1.3.6.1.4.1.57683.2, which kube-apiserver reads since 1.33).
import assert from 'node:assert/strict';
import path from 'node:path';
import { request } from 'node:https';
import { createSecureContext } from 'node:tls';
import fc from 'fast-check';
import type { CertificateAndKey } from '../../lib/pki.js';
import { figure, fuzz, shrinkBudget, size } from './support/knobs.js';
import { issueOddCertificate, leafKey, STRING_TAGS, type ExtendedKeyUsage, type LeafKey, type StringType, type Subject, type SubjectAttribute } from './support/odd-certificates.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const SELF_SUBJECT_REVIEW = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const REVIEW_BODY = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });

interface Person {
  username: string;
  groups: string[];
  uid?: string;
}

type Outcome = { kind: 'person'; person: Person } | { kind: 'refused'; why: string };

/**
 * One JSON POST on a connection of its own; a failure is status 0. The body is decoded once it is
 * whole: a long list of groups spans several chunks, and a character split between two must not
 * come out as two replacement characters.
 */
function post(options: { port: number; path: string; ca: string; cert: CertificateAndKey; body: string }): Promise<{ status: number; body: string; error?: string }> {
  return new Promise((resolve) => {
    const { cert } = options;
    const req = request(
      { host: '127.0.0.1', port: options.port, path: options.path, method: 'POST', ca: options.ca, cert: cert.certPem, key: cert.keyPem, agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => resolve({ status: 0, body: '', error: err.message }));
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ status: 0, body: '', error: err.message }));
    req.end(options.body);
  });
}

function attribute(type: SubjectAttribute['type'], value: string, stringType: StringType = 'utf8', bytes?: Buffer): SubjectAttribute {
  return { type, value, stringType, ...(bytes ? { bytes } : {}) };
}

/** Subjects worth naming: each once broke, or could break, a reader of certificate subjects. */
const NAMED: [string, Subject][] = [
  ['a plain person', [[attribute('O', 'dev')], [attribute('CN', 'alice')]]],
  ['two CNs (the last one counts)', [[attribute('CN', 'alice')], [attribute('CN', 'bob')]]],
  ['a multi-valued RDN', [[attribute('CN', 'carol'), attribute('O', 'dev')]]],
  ['several O in one RDN and repeated', [[attribute('O', 'a'), attribute('O', 'b')], [attribute('O', 'a')], [attribute('CN', 'dave')]]],
  ['an empty CN', [[attribute('O', 'dev')], [attribute('CN', '')]]],
  ['no CN at all', [[attribute('O', 'dev')]]],
  ['an injected RDN in the CN', [[attribute('CN', 'erin\nO=system:masters')]]],
  ['escapes a printer would add', [[attribute('CN', 'a,b+c=d\\e"f#g')]]],
  ['spaces around the CN', [[attribute('CN', ' frank ')]]],
  ['unicode', [[attribute('CN', 'zoë 😀'), attribute('O', 'équipe')]]],
  ['a BMPString outside Latin-1', [[attribute('CN', '\u726f\u6f74', 'bmp')]]],
  ['a BMPString', [[attribute('CN', 'zoë', 'bmp')]]],
  ['a T61String (Latin-1 to Go)', [[attribute('CN', 'zoë', 't61')]]],
  ['a UniversalString', [[attribute('CN', 'zoë', 'universal')]]],
  ['a PrintableString holding @', [[attribute('CN', 'gina@example.com', 'printable')]]],
  ['an IA5String holding Latin-1', [[attribute('CN', 'zoë', 'ia5')]]],
  ['a NumericString holding letters', [[attribute('CN', 'henry', 'numeric')]]],
  ['a NUL in the CN', [[attribute('CN', 'ivan\u0000x')]]],
  ['a long O list', [...Array.from({ length: 120 }, (_, i) => [attribute('O', `team-${i}`)]), [attribute('CN', 'judy')]]],
  ['a uid', [[attribute('O', 'dev')], [attribute('CN', 'kate')], [attribute('UID', 'u-4711')]]],
  ['a uid in the RDN of the CN', [[attribute('CN', 'kate'), attribute('UID', 'u-4712')]]],
  ['a uid before the CN, as a PrintableString', [[attribute('UID', 'u-4713', 'printable')], [attribute('CN', 'kate')]]],
  ['a uid as a BMPString', [[attribute('CN', 'kate')], [attribute('UID', 'ü-4714', 'bmp')]]],
  ['two uids (the API server refuses the certificate)', [[attribute('CN', 'liam')], [attribute('UID', 'u-1')], [attribute('UID', 'u-2')]]],
  ['two equal uids', [[attribute('CN', 'liam'), attribute('UID', 'u-1')], [attribute('UID', 'u-1')]]],
  ['an empty uid (the API server refuses the certificate)', [[attribute('CN', 'mia')], [attribute('UID', '')]]],
  ['a uid with spaces around it', [[attribute('CN', 'noah')], [attribute('UID', ' u-5 ')]]],
  ['a uid in a NumericString holding letters', [[attribute('CN', 'olga')], [attribute('UID', 'u-6', 'numeric')]]],
];

const TRICKY_TEXT = ['', ' ', 'alice', 'root', 'system:masters', 'system:authenticated', 'a\nb', 'a,b', 'a+b', 'x=y', '\\', '"', '#x', ' pad ', 'zoë', '牯潴', 'a\u0000b', 'é'.repeat(40)];

const text = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z][a-z0-9.@_-]{0,12}$/) },
  { weight: 2, arbitrary: fc.constantFrom(...TRICKY_TEXT) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
);
const stringType = fc.oneof(
  { weight: 6, arbitrary: fc.constant<StringType>('utf8') },
  { weight: 3, arbitrary: fc.constant<StringType>('printable') },
  { weight: 2, arbitrary: fc.constantFrom(...(Object.keys(STRING_TAGS) as StringType[])) },
);
const attributeArb = fc.record({ type: fc.constantFrom<SubjectAttribute['type'][]>('CN', 'CN', 'O', 'O', 'O', 'OU', 'UID'), value: text, stringType });
const rdnArb = fc.array(attributeArb, { minLength: 1, maxLength: 3 });
// What a CA usually writes: UTF8String, and the occasional PrintableString.
const plainRdnArb = fc.array(fc.record({ type: fc.constantFrom<SubjectAttribute['type'][]>('O', 'O', 'OU', 'CN'), value: text, stringType: fc.constant<StringType>('utf8') }), { minLength: 1, maxLength: 2 });
const subjectArb: fc.Arbitrary<Subject> = fc.oneof(
  { weight: 3, arbitrary: fc.array(rdnArb, { maxLength: 6 }) },
  // Mostly a person: RDNs around a CN (utf8 or printable, as a CA would write it).
  {
    weight: 5,
    arbitrary: fc
      .tuple(fc.array(plainRdnArb, { maxLength: 4 }), text, fc.constantFrom<StringType[]>('utf8', 'utf8', 'utf8', 'printable'), fc.array(plainRdnArb, { maxLength: 2 }))
      .map(([before, cn, type, after]) => [...before, [attribute('CN', cn, type)], ...after]),
  },
  // Very long O lists after a CN that will do.
  { weight: 1, arbitrary: fc.tuple(text, fc.array(text, { minLength: 20, maxLength: 200 })).map(([cn, orgs]) => [...orgs.map((o) => [attribute('O', o)]), [attribute('CN', cn)]]) },
);
const ekuArb = fc.oneof({ weight: 8, arbitrary: fc.constant<ExtendedKeyUsage>('clientAuth') }, { weight: 1, arbitrary: fc.constantFrom<ExtendedKeyUsage[]>('none', 'anyExtendedKeyUsage', 'serverAuth') });

const CONTROL = /[\u0000-\u001f\u007f]/;

/** What the sidecar may refuse on purpose although the API server accepts the certificate. */
function refusalAllowed(person: Person, eku: ExtendedKeyUsage): string | undefined {
  if (eku !== 'clientAuth') return 'the sidecar requires the clientAuth extended key usage';
  const names = [person.username, ...person.groups.filter((g) => g !== 'system:authenticated'), ...(person.uid !== undefined ? [person.uid] : [])];
  if (names.some((n) => n.startsWith('system:'))) return 'the guard keeps system: names out';
  if (names.some((n) => n === '' || CONTROL.test(n) || n !== n.trim())) return 'a name no header can carry';
  return undefined;
}

describe('hardening: client certificates with odd subjects (the API server as the oracle)', function () {
  this.timeout(size(180_000, 60 * 60_000));
  const { cp } = withSharedControlPlane();
  const sidecar = withSidecar(() => ({ flags: [`--client-ca-file=${path.join(cp.dir, 'ca.crt')}`] }));
  let key: LeafKey;
  const tally = { cases: 0, accepted: 0, refusedByBoth: 0, refusedBySidecarOnly: 0, unloadable: 0 };

  before(function () {
    key = leafKey();
  });

  after(function () {
    figure(`client certificates: ${JSON.stringify(tally)}`);
  });

  /** "Who am I?" with this certificate; a handshake the server refuses is a refusal too. */
  async function whoAmI(port: number, ca: string, cert: CertificateAndKey): Promise<Outcome> {
    const response = await post({ port, path: SELF_SUBJECT_REVIEW, ca, cert, body: REVIEW_BODY });
    if (response.status === 0) return { kind: 'refused', why: `connection: ${response.error}` };
    if (response.status !== 201) return { kind: 'refused', why: `${response.status} ${response.body.slice(0, 200)}` };
    const user = (JSON.parse(response.body) as { status: { userInfo: { username: string; uid?: string; groups?: string[] } } }).status.userInfo;
    return { kind: 'person', person: { username: user.username, groups: user.groups ?? [], ...(user.uid ? { uid: user.uid } : {}) } };
  }

  /** Whether OpenSSL will present it at all (it refuses, say, a UniversalString that is not UCS-4). */
  function presentable(cert: CertificateAndKey): boolean {
    try {
      createSecureContext({ cert: cert.certPem, key: cert.keyPem });
      return true;
    } catch {
      return false;
    }
  }

  /** Shows one certificate to both and checks the rule. */
  async function check(subject: Subject, eku: ExtendedKeyUsage): Promise<void> {
    const cert = issueOddCertificate(cp.ca, key, subject, eku);
    if (!presentable(cert)) {
      tally.unloadable++;
      return;
    }
    const direct = await whoAmI(cp.port, cp.ca.certPem, cert);
    const via = await whoAmI(sidecar.port, sidecar.servingCa.certPem, cert);
    tally.cases++;
    if (via.kind === 'person') {
      assert.equal(direct.kind, 'person', `the sidecar let in as ${JSON.stringify(via.person)} a certificate the API server refuses (${direct.kind === 'refused' ? direct.why : ''})`);
      assert.deepEqual(via.person, direct.person, 'the sidecar and the API server see different people in one certificate');
      tally.accepted++;
      return;
    }
    if (direct.kind === 'refused') {
      tally.refusedByBoth++;
      return;
    }
    const allowed = refusalAllowed(direct.person, eku);
    assert.ok(allowed, `the API server knows this certificate as ${JSON.stringify(direct.person)}, the sidecar refused it: ${via.why}`);
    tally.refusedBySidecarOnly++;
  }

  for (const [what, subject] of NAMED) {
    it(`${what}: the same person as the API server sees, or refused`, async function () {
      await check(subject, 'clientAuth');
    });
  }

  it('random subjects, string types and key usages: the same person, or refused (property)', async function () {
    await fuzz(this, fc.asyncProperty(subjectArb, ekuArb, shrinkBudget(check)), { short: 40, long: 5000 });
  });
});
