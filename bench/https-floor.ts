// What the injector's AdmissionReview figures stand on: Node.js's HTTPS server answering the review
// the bench sends with the answer the injector gave it (the uid made each review's own), and nothing
// else: read the body, JSON.parse, JSON.stringify, write. The bench runs it as the image runs the
// injector (its node flags and environment), beside the injector, at the same concurrencies.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { KEEP_ALIVE_TIMEOUT_MS } from '../injector/server.js';

const [certFile, keyFile, answerFile, port] = process.argv.slice(2);
const answer = JSON.parse(readFileSync(answerFile!, 'utf8')) as { response: { uid: string } };

const server = createServer({ cert: readFileSync(certFile!), key: readFileSync(keyFile!), keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, (req, res) => {
  if (req.method !== 'POST') return void res.end('ok\n'); // the bench's wait for it to listen
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request: { uid: string } };
    const body = JSON.stringify({ ...answer, response: { ...answer.response, uid: review.request.uid } });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.listen(Number(port), '127.0.0.1');
process.once('SIGTERM', () => process.exit(0));
