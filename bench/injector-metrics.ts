// What the injector's own /metrics says about a load run: the reviews it refused, the time it spent
// on each review from reading it to answering (its admission histogram), and how late its event
// loop ran. prom-client resets its event-loop delay histogram at every scrape, so a scrape right
// before a run and one right after it give the delay during the run.
import { request } from 'node:https';
import { sampleSum } from './metrics.js';

export interface InjectorSample {
  denied: number;
  /** Reviews answered so far, whatever the outcome, and the seconds spent on them. */
  answered: number;
  answeringSeconds: number;
  /** Since the previous scrape. */
  eventLoopDelay: { p99Ms: number; maxMs: number };
}

function scrape(base: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/metrics`, { rejectUnauthorized: false, agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function sampleInjector(base: string): Promise<InjectorSample> {
  return sampleOf(await scrape(base));
}

/** What a scrape of the injector's /metrics (Prometheus text) says. */
export function sampleOf(text: string): InjectorSample {
  const lag = (which: string) => sampleSum(text, `chaperone_injector_nodejs_eventloop_lag_${which}_seconds`) * 1000;
  return {
    denied: sampleSum(text, 'chaperone_injector_admissions_total', { outcome: 'denied' }),
    answered: sampleSum(text, 'chaperone_injector_admission_duration_seconds_count'),
    answeringSeconds: sampleSum(text, 'chaperone_injector_admission_duration_seconds_sum'),
    eventLoopDelay: { p99Ms: lag('p99'), maxMs: lag('max') },
  };
}

/** What happened between two samples: reviews refused, the injector's mean time per review, its event-loop delay. */
export function between(before: InjectorSample, after: InjectorSample): { denied: number; answeringMs: number; eventLoopDelay: InjectorSample['eventLoopDelay'] } {
  const answered = after.answered - before.answered;
  return {
    denied: after.denied - before.denied,
    answeringMs: answered > 0 ? ((after.answeringSeconds - before.answeringSeconds) * 1000) / answered : 0,
    eventLoopDelay: after.eventLoopDelay,
  };
}
