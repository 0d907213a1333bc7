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
  const classic = batchdb('/tmp/c.db', { keepAlive: false, run: () => ({ on: () => undefined, pipe: () => undefined }) });
  classic.run();
  await compute.close();
  const other = await batchdb.open('/tmp/other.db');
  other.close(() => {});
  console.log(c2, n, g, batchdb.version());
}
void main;
