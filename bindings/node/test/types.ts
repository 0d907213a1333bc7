// Type-checked with `npm run typecheck` (tsc --noEmit); not run.
import batchdb = require('..');
import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';

function run(key: string, created: number): Duplex {
  const ps = spawn('bash');
  return Duplex.from({ writable: ps.stdin, readable: ps.stdout });
}

async function main(): Promise<void> {
  const compute = batchdb('/tmp/compute.db', { path: '/tmp/compute.blobs', run, workers: 2, order: 'oldest' });
  compute.add().end('sleep 5; date');
  compute.on('create', (key) => console.log('created', key.toUpperCase()));
  compute.on('push', (key, created) => console.log('pushed', key, created + 1));
  compute.on('result', (key, id, created) => compute.getResult(id).pipe(process.stdout));
  compute.on('fail', (err) => console.log(err.message, err.job, err.created));

  const { key, created } = await compute.add({ priority: 2, delay: 100 }).end('x').promise;
  const k2: string = await compute.create().end('y').promise;
  const c2: number = await compute.push(k2, { priority: 1 });
  compute.push(k2, (err, c) => console.log(err, c));
  for await (const row of compute.list('pending')) {
    const p: number | undefined = row.priority;
    console.log(row.job, row.created, row.running, p);
  }
  for await (const row of compute.list('result')) console.log(row.value.hash, row.key[1]);
  for await (const row of compute.list('fail')) console.log(row.value.message, row.value.attempts);
  await compute.cancel(key, created);
  const n: number = await compute.prune(new Date());
  const g: number = await compute.gc();
  await compute.run({ untilEmpty: true });
  await compute.run({ keepAlive: true });

  // Section 9: queues, limits, pause, unique pushes, schedules, progress.
  const c3: number = await compute.push(k2, { queue: 'emails', unique: true });
  await compute.add({ queue: 'emails', unique: true, priority: 1 }).end('z').promise;
  await compute.limit('emails', 2);
  await compute.pause('emails');
  compute.resume('emails', (err) => console.log(err));
  const s: batchdb.ScheduleRow = await compute.schedule('nightly', '0 3 * * *', 'backup', { queue: 'emails' });
  compute.schedule('tick', 'every 30s', Buffer.from('tick'), (err, row) => console.log(err, row && row.next_run));
  for (const row of await compute.schedules()) console.log(row.name, row.spec, row.queue, row.job, row.next_run);
  await compute.unschedule(s.name);
  for await (const row of compute.list('pending')) {
    const q: string | undefined = row.queue;
    const done: number | undefined = row.progress && row.progress.done;
    console.log(q, done, row.progress?.message);
  }
  compute.on('progress', (k, c, done, message) => console.log(k, c + 1, done * 100, message.length));
  const queued = batchdb('/tmp/q.db', {
    queues: ['emails', 'default'],
    run: (key, created, job) => {
      job.progress(0.5, 'half').then(() => job.progress(1));
      job.progress(0.1, (err) => console.log(err, job.key, job.created));
      return run(key, created);
    },
  });
  await queued.run({ untilEmpty: true, queues: ['emails'] });

  // Section 10: memo, after, why, the runner's inputs.
  const p: batchdb.Pushed = await compute.submit(k2, { memo: true });
  const hit: string | null = p.cached;
  const c4: number = await compute.push(k2, { memo: true, after: [[k2, c2], { key: k2, created: c3 }] });
  compute.push(k2, { memo: true }, (err, c, info) => console.log(err, c, info && info.cached));
  const a = await compute.add({ memo: true, after: [[k2, c4]] }).end('w').promise;
  const cachedAdd: string | null = a.cached;
  compute.add({ memo: true }, (err, k, c, info) => console.log(err, k, c, info?.cached)).end('v');
  for (const line of await compute.why(k2)) {
    if ('job' in line) console.log(line.job);
    else console.log(line.result[0], line.result[1], line.after.length);
  }
  for await (const row of compute.list('pending')) console.log(row.after && row.after[0][1]);
  const piped = batchdb('/tmp/p.db', {
    run: (key, created, job) => {
      for (const up of job.after) console.log(up.key, up.created + 1, up.hash);
      return run(key, created);
    },
  });
  console.log(hit, cachedAdd, piped);
  console.log(c3);
  const classic = batchdb('/tmp/c.db', { keepAlive: false, run: () => ({ on: () => undefined, pipe: () => undefined }) });
  classic.run();
  await compute.close();
  const other = await batchdb.open('/tmp/other.db');
  other.close(() => {});
  console.log(c2, n, g, batchdb.version());
}
void main;
