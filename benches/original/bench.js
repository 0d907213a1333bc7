// P7: the original JavaScript batchdb 2.1.1 (levelup 0.19.1 + leveldown 6.1.1).
// node bench.js DIR N  ->  one JSON line: {"add": jobs/s, "run": jobs/s, "n": N}
// add: N distinct small payloads, one add() at a time (its push() is broken: undefined self).
// run: run() only wakes on 'create', so every job is added first, then run() is called and
// 'result' events are counted; the runner is trivial and in-process (consumes the payload,
// writes nothing).
'use strict';
var path = require('path');
var fs = require('fs');
var levelup = require('levelup');
var leveldown = require('leveldown');
var batchdb = require('batchdb');
var through = require('through2');

var dir = process.argv[2];
var n = Number(process.argv[3]);
if (!dir || !(n > 0)) {
    console.error('usage: node bench.js DIR N');
    process.exit(2);
}
fs.mkdirSync(dir, { recursive: true });

var db = levelup(path.join(dir, 'db'), { db: leveldown });
var compute = batchdb(db, {
    path: path.join(dir, 'blobs'),
    run: function () {
        return through(function (chunk, enc, next) { next(); });
    }
});
compute.on('error', function (err) { console.error(err); process.exit(1); });

function payload(i) {
    return 'job payload number ' + String(i).padStart(8, '0');
}

var t0 = process.hrtime.bigint();
var added = 0;
(function addOne() {
    if (added === n) return adds();
    var w = compute.add(function (err) {
        if (err) { console.error(err); process.exit(1); }
        added++;
        addOne();
    });
    w.end(payload(added));
})();

function secs(since) {
    return Number(process.hrtime.bigint() - since) / 1e9;
}

function adds() {
    var addRate = n / secs(t0);
    var results = 0;
    var t1 = process.hrtime.bigint();
    compute.on('result', function () {
        results++;
        if (results === n) {
            var runRate = n / secs(t1);
            console.log(JSON.stringify({ add: addRate, run: runRate, n: n }));
            process.exit(0);
        }
    });
    compute.run();
}
