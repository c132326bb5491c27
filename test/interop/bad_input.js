'use strict';
// runjob interop tier, bad input at the edges: a table of requests, each invalid in one field
// (or as a whole), sent as hand-encoded protobuf bytes to a real `runjob serve` over mutual TLS
// 1.3, so that anything can be sent: non-UTF-8 and NUL bytes in strings, unknown enum values,
// negative and 2^64-1 varints, wrong wire types, garbage, more than the server's 1 MiB.
// Each row states the gRPC code it must get and words its message must contain (naming the
// field); after every row the server must still answer Ping. Prints one "PASS: name" or
// "FAIL: name -- why" line per row (test/run.sh counts them); exits non-zero on any failure.
// Started by test/interop/run.sh, which sets RJ_PORT, RJ_CERTS (as for interop.js) and
// RJ_MAX_CPU_MILLIS (the server's --max-cpu, in millis).

const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const { ok, fail, codeName, summary, ...common } = require('./common');

const MAX_CPU = BigInt(process.env.RJ_MAX_CPU_MILLIS || '0');
const SVC = '/runjob.v1.JobManager/';
const RPC_TIMEOUT_MS = 20000;

// ---- protobuf wire encoding by hand (so that anything at all can be sent) --------------------

// varint(v): v taken modulo 2^64, so -1 is the 10-byte encoding of 2^64-1 (how int32/int64
// negatives travel).
function varint(v) {
  let x = BigInt.asUintN(64, BigInt(v));
  const out = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return Buffer.from(out);
}
const key = (field, wt) => varint((field << 3) | wt);
const fVarint = (field, v) => Buffer.concat([key(field, 0), varint(v)]);
const fBytes = (field, b) => {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b, 'utf8');
  return Buffer.concat([key(field, 2), varint(buf.length), buf]);
};
const msg = (...parts) => Buffer.concat(parts);

// Field numbers, from proto/runjob.proto.
const START = { name: 1, command: 2, args: 3, limits: 4, network: 5 };
const LIMITS = { cpu_millis: 1, memory_bytes: 2, io_riops: 3, io_wiops: 4, io_rbps: 5, io_wbps: 6, pids: 7 };
const STOP = { id: 1, signal: 2, grace_millis: 3 };
const STREAM = { id: 1, select: 2, offset: 3, no_follow: 4 };

const start = ({ name, command = '/usr/bin/true', args = [], limits = null, network, extra = [] } = {}) =>
  msg(
    name === undefined ? Buffer.alloc(0) : fBytes(START.name, name),
    command === null ? Buffer.alloc(0) : fBytes(START.command, command),
    ...args.map((a) => fBytes(START.args, a)),
    limits ? fBytes(START.limits, msg(...Object.entries(limits).map(([k, v]) => fVarint(LIMITS[k], v)))) : Buffer.alloc(0),
    network === undefined ? Buffer.alloc(0) : fVarint(START.network, network),
    ...extra,
  );
const idOnly = (id) => (id === null ? Buffer.alloc(0) : fBytes(1, id));

// A small decoder: top-level fields as {number: [values]}, varints as BigInt, the rest Buffers.
function decode(buf) {
  const out = {};
  let i = 0;
  const rdv = () => {
    let v = 0n;
    let s = 0n;
    for (;;) {
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << s;
      s += 7n;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < buf.length) {
    const k = Number(rdv());
    const f = k >> 3;
    let v;
    switch (k & 7) {
      case 0: v = rdv(); break;
      case 1: v = buf.subarray(i, i + 8); i += 8; break;
      case 2: { const n = Number(rdv()); v = buf.subarray(i, i + n); i += n; break; }
      case 5: v = buf.subarray(i, i + 4); i += 4; break;
      default: throw new Error(`wire type ${k & 7}`);
    }
    (out[f] = out[f] || []).push(v);
  }
  return out;
}
const str = (d, f) => (d[f] ? d[f][d[f].length - 1].toString('utf8') : '');
const num = (d, f) => (d[f] ? d[f][d[f].length - 1] : 0n);

// ---- raw clients ---------------------------------------------------------------------------

const rawClient = (user) =>
  common.client(grpc.Client, user, { options: { 'grpc.max_receive_message_length': 16 << 20 } });
const ident = (b) => b;
const deadline = () => new Date(Date.now() + RPC_TIMEOUT_MS);

// call(client, rpc, body): {code, details, messages: [Buffer]} for unary and streaming RPCs alike.
function call(c, rpc, body) {
  return new Promise((resolve) => {
    if (rpc === 'Stream') {
      const messages = [];
      let done = false;
      const s = c.makeServerStreamRequest(SVC + rpc, ident, ident, body, new grpc.Metadata(), { deadline: deadline() });
      s.on('data', (m) => messages.push(m));
      s.on('error', () => {}); // the status event carries the same
      s.on('status', (st) => {
        if (!done) {
          done = true;
          resolve({ code: st.code, details: st.details || '', messages });
        }
      });
      return;
    }
    c.makeUnaryRequest(SVC + rpc, ident, ident, body, { deadline: deadline() }, (err, res) =>
      resolve(err ? { code: err.code, details: err.details || '', messages: [] } : { code: 0, details: '', messages: [res] }),
    );
  });
}

const S = grpc.status;

// ---- the table -----------------------------------------------------------------------------

const uuid = () => crypto.randomUUID();
const repeat = (s, n) => s.repeat(n);
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const GARBAGE = [
  ['garbage bytes (0xff...)', Buffer.alloc(64, 0xff)],
  ['truncated length-delimited field', Buffer.from([0x0a, 100, 0x61, 0x62, 0x63])],
  ['invalid wire type 7', Buffer.from([0x0f, 0x01])],
  ['field number 0', Buffer.from([0x00, 0x01])],
  ['varint longer than 10 bytes', Buffer.concat([Buffer.from([0x08]), Buffer.alloc(11, 0x80), Buffer.from([0x01])])],
];
const MALFORMED = 'malformed request';
const BIG = 1200 * 1024; // over the server's 1 MiB receive limit (RPC_MAX_REQUEST_BYTES)
const TOO_BIG = /larger than max/;

// Every invalid id, for each RPC that takes one. ctx.ok is alice's live job, ctx.bobs bob's.
function idRows(rpc, wrap) {
  const u = uuid();
  return [
    [rpc, 'id', 'missing', () => wrap(null), S.INVALID_ARGUMENT, 'job id is empty'],
    [rpc, 'id', 'empty', () => wrap(''), S.INVALID_ARGUMENT, 'job id is empty'],
    [rpc, 'id', 'too short', () => wrap(u.slice(0, 35)), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'too long (one more hex digit)', () => wrap(u + '0'), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'trailing garbage', (ctx) => wrap(ctx.ok + ' junk'), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'non-hex digit', () => wrap('g' + u.slice(1)), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'upper case', (ctx) => wrap(ctx.ok.toUpperCase()), S.INVALID_ARGUMENT, 'lower-case UUID'],
    [rpc, 'id', 'no dashes', () => wrap(u.replace(/-/g, '') + 'abcd'), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'braced', () => wrap(`{${u}}`), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'path traversal', () => wrap('../../../../etc/passwd'), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'a real id then NUL and more', (ctx) => wrap(Buffer.concat([Buffer.from(ctx.ok), Buffer.from([0]), Buffer.from('x')])),
      S.INVALID_ARGUMENT, 'id contains a NUL byte'],
    [rpc, 'id', 'NUL only', () => wrap(Buffer.from([0])), S.INVALID_ARGUMENT, 'id contains a NUL byte'],
    [rpc, 'id', 'non-UTF-8 bytes', () => wrap(Buffer.from([0xff, 0xfe, 0x41])), S.INVALID_ARGUMENT, 'id is not valid UTF-8'],
    [rpc, 'id', 'a UUID-shaped string with non-ASCII', () => wrap(u.slice(0, 34) + 'é'), S.INVALID_ARGUMENT, 'malformed job id'],
    [rpc, 'id', 'oversized (1 MiB+)', () => wrap(repeat('a', BIG)), S.RESOURCE_EXHAUSTED, TOO_BIG],
    [rpc, 'id', 'well-formed but unknown', () => wrap(u), S.NOT_FOUND, 'not found'],
    [rpc, 'id', "another user's job", (ctx) => wrap(ctx.bobs), S.NOT_FOUND, 'not found'],
  ];
}

function garbageRows(rpc) {
  return GARBAGE.map(([cls, b]) => [rpc, '(whole request)', cls, () => b, S.INVALID_ARGUMENT, MALFORMED]);
}

function table() {
  const rows = [];
  const L = (limits) => () => start({ limits });
  const lim = (f, cls, v, code, words) => rows.push(['Start', `limits.${f}`, cls, L({ [f]: v }), code, words]);

  // Start: command.
  rows.push(
    ['Start', 'command', 'missing', () => start({ command: null }), S.INVALID_ARGUMENT, 'command is empty'],
    ['Start', 'command', 'empty', () => start({ command: '' }), S.INVALID_ARGUMENT, 'command is empty'],
    ['Start', 'command', 'relative', () => start({ command: 'usr/bin/true' }), S.INVALID_ARGUMENT, 'not an absolute path'],
    ['Start', 'command', 'relative ./', () => start({ command: './true' }), S.INVALID_ARGUMENT, 'not an absolute path'],
    ['Start', 'command', 'bare name', () => start({ command: 'true' }), S.INVALID_ARGUMENT, 'not an absolute path'],
    ['Start', 'command', 'NUL inside', () => start({ command: Buffer.from('/usr/bin/true\0/evil') }), S.INVALID_ARGUMENT,
      'command contains a NUL byte'],
    ['Start', 'command', 'non-UTF-8 bytes', () => start({ command: Buffer.from([0x2f, 0x62, 0xff, 0x6e]) }), S.INVALID_ARGUMENT,
      'command is not valid UTF-8'],
    ['Start', 'command', 'overlong UTF-8 for "/"', () => start({ command: Buffer.from([0xc0, 0xaf, 0x62]) }), S.INVALID_ARGUMENT,
      'command is not valid UTF-8'],
    ['Start', 'command', 'UTF-16 surrogate', () => start({ command: Buffer.from([0x2f, 0xed, 0xa0, 0x80]) }), S.INVALID_ARGUMENT,
      'command is not valid UTF-8'],
    ['Start', 'command', '4096 bytes', () => start({ command: '/' + repeat('a', 4095) }), S.INVALID_ARGUMENT,
      'command path is longer than 4095 bytes'],
    ['Start', 'command', '900 KB', () => start({ command: '/' + repeat('a', 900 * 1024) }), S.INVALID_ARGUMENT,
      'command path is longer than 4095 bytes'],
    ['Start', 'command', 'oversized (1 MiB+)', () => start({ command: '/' + repeat('a', BIG) }), S.RESOURCE_EXHAUSTED, TOO_BIG],
    ['Start', 'command', 'does not exist', () => start({ command: '/nonexistent/runjob-bad-input' }), S.FAILED_PRECONDITION,
      '/nonexistent/runjob-bad-input'],
    ['Start', 'command', 'a directory', () => start({ command: '/usr/bin' }), S.FAILED_PRECONDITION, 'could not start'],
    ['Start', 'command', 'not executable', () => start({ command: '/etc/hostname' }), S.FAILED_PRECONDITION, 'could not start'],
    ['Start', 'command', 'wrong wire type (varint)', () => fVarint(START.command, 5), S.INVALID_ARGUMENT, MALFORMED],
  );
  // Start: args.
  rows.push(
    ['Start', 'args', '1025 of them', () => start({ args: Array(1025).fill('x') }), S.INVALID_ARGUMENT, 'too many arguments: 1025'],
    ['Start', 'args', '5000 of them', () => start({ args: Array(5000).fill('x') }), S.INVALID_ARGUMENT, 'too many arguments: 5000'],
    ['Start', 'args', 'one of 128 KiB (total 128 KiB + 1)', () => start({ args: [repeat('a', 128 * 1024)] }), S.INVALID_ARGUMENT,
      'arguments total 131073 bytes'],
    ['Start', 'args', 'one of 900 KB', () => start({ args: [repeat('a', 900 * 1024)] }), S.INVALID_ARGUMENT, 'arguments total'],
    ['Start', 'args', 'one of 1 MiB+ (oversized)', () => start({ args: [repeat('a', BIG)] }), S.RESOURCE_EXHAUSTED, TOO_BIG],
    ['Start', 'args', '5000 of 300 bytes (1.5 MB)', () => start({ args: Array(5000).fill(repeat('a', 300)) }), S.RESOURCE_EXHAUSTED,
      TOO_BIG],
    ['Start', 'args', 'NUL inside args[1]', () => start({ args: ['ok', Buffer.from('a\0b')] }), S.INVALID_ARGUMENT,
      'args[1] contains a NUL byte'],
    ['Start', 'args', 'non-UTF-8 args[2]', () => start({ args: ['a', 'b', Buffer.from([0x80])] }), S.INVALID_ARGUMENT,
      'args[2] is not valid UTF-8'],
    ['Start', 'args', 'truncated UTF-8 sequence', () => start({ args: [Buffer.from([0x61, 0xe2, 0x82])] }), S.INVALID_ARGUMENT,
      'args[0] is not valid UTF-8'],
    ['Start', 'args', 'code point above U+10FFFF', () => start({ args: [Buffer.from([0xf4, 0x90, 0x80, 0x80])] }),
      S.INVALID_ARGUMENT, 'args[0] is not valid UTF-8'],
  );
  // Start: name.
  rows.push(
    ['Start', 'name', '129 bytes', () => start({ name: repeat('n', 129) }), S.INVALID_ARGUMENT, 'job name'],
    ['Start', 'name', 'newline', () => start({ name: 'a\nb' }), S.INVALID_ARGUMENT, 'job name'],
    ['Start', 'name', 'ESC (terminal escape)', () => start({ name: '\x1b[31mred' }), S.INVALID_ARGUMENT, 'job name'],
    ['Start', 'name', 'C1 control U+0085', () => start({ name: 'a\u0085b' }), S.INVALID_ARGUMENT, 'job name'],
    ['Start', 'name', 'U+2028 line separator', () => start({ name: 'a\u2028b' }), S.INVALID_ARGUMENT, 'job name'],
    ['Start', 'name', 'NUL inside', () => start({ name: Buffer.from('nice\0evil') }), S.INVALID_ARGUMENT, 'name contains a NUL byte'],
    ['Start', 'name', 'non-UTF-8 bytes', () => start({ name: Buffer.from([0x6e, 0xc3]) }), S.INVALID_ARGUMENT, 'name is not valid UTF-8'],
    ['Start', 'name', 'oversized (1 MiB+)', () => start({ name: repeat('n', BIG) }), S.RESOURCE_EXHAUSTED, TOO_BIG],
  );
  // Start: limits (the server runs with its defaults: --max-cpu = number of CPUs, memory 4 GiB,
  // riops/wiops 1e6, pids 32768; rbps/wbps have no maximum).
  lim('cpu_millis', 'above the maximum', MAX_CPU + 1n, S.INVALID_ARGUMENT, `limits.cpu_millis=${MAX_CPU + 1n} is above`);
  lim('cpu_millis', '2^63', 1n << 63n, S.INVALID_ARGUMENT, 'limits.cpu_millis=9223372036854775808 is above');
  lim('cpu_millis', 'negative (-1 as 2^64-1)', -1, S.INVALID_ARGUMENT, 'limits.cpu_millis=18446744073709551615 is above');
  lim('cpu_millis', 'below the minimum (1)', 1, S.INVALID_ARGUMENT, 'limits.cpu_millis=1 is below');
  lim('memory_bytes', '2^63', 1n << 63n, S.INVALID_ARGUMENT, 'limits.memory_bytes=9223372036854775808 is above');
  lim('memory_bytes', 'negative (-1 as 2^64-1)', -1, S.INVALID_ARGUMENT, 'limits.memory_bytes=18446744073709551615 is above');
  lim('memory_bytes', 'absurdly small (1 byte)', 1, S.INVALID_ARGUMENT, 'limits.memory_bytes=1 is below');
  lim('io_riops', 'above the maximum', 1000001, S.INVALID_ARGUMENT, 'limits.io_riops=1000001 is above');
  lim('io_wiops', '2^64-1', U64_MAX, S.INVALID_ARGUMENT, 'limits.io_wiops=18446744073709551615 is above');
  lim('pids', 'above the maximum', 32769, S.INVALID_ARGUMENT, 'limits.pids=32769 is above');
  lim('pids', '2^64-1', U64_MAX, S.INVALID_ARGUMENT, 'limits.pids=18446744073709551615 is above');
  lim('pids', 'too few to start (1)', 1, S.INVALID_ARGUMENT, 'limits.pids=1 is below');
  rows.push(
    ['Start', 'limits', 'wrong wire type (varint)', () => fVarint(START.limits, 1), S.INVALID_ARGUMENT, MALFORMED],
    ['Start', 'limits', 'garbage inside', () => msg(fBytes(START.command, '/usr/bin/true'), fBytes(START.limits, Buffer.alloc(8, 0xff))),
      S.INVALID_ARGUMENT, MALFORMED],
  );
  // Start: network.
  rows.push(
    ['Start', 'network', 'unknown enum value 2', () => start({ network: 2 }), S.INVALID_ARGUMENT, 'unknown network mode 2'],
    ['Start', 'network', 'unknown enum value -1', () => start({ network: -1 }), S.INVALID_ARGUMENT, 'unknown network mode -1'],
    ['Start', 'network', 'unknown enum value 2^31-1', () => start({ network: 2147483647 }), S.INVALID_ARGUMENT,
      'unknown network mode 2147483647'],
    ['Start', 'network', 'HOST (not allowed here)', () => start({ network: 1 }), S.PERMISSION_DENIED, 'host networking'],
  );
  rows.push(...garbageRows('Start'));

  // Stop.
  rows.push(...idRows('Stop', (id) => idOnly(id)));
  const stop = (ctx, f) => msg(fBytes(STOP.id, ctx.ok), f);
  rows.push(
    ['Stop', 'signal', 'negative', (ctx) => stop(ctx, fVarint(STOP.signal, -1)), S.INVALID_ARGUMENT, 'signal -1 is not a valid signal'],
    ['Stop', 'signal', 'INT32_MIN', (ctx) => stop(ctx, fVarint(STOP.signal, -2147483648)), S.INVALID_ARGUMENT,
      'signal -2147483648 is not a valid signal'],
    ['Stop', 'signal', 'past SIGRTMAX (65)', (ctx) => stop(ctx, fVarint(STOP.signal, 65)), S.INVALID_ARGUMENT,
      'signal 65 is not a valid signal'],
    ['Stop', 'signal', 'INT32_MAX', (ctx) => stop(ctx, fVarint(STOP.signal, 2147483647)), S.INVALID_ARGUMENT,
      'signal 2147483647 is not a valid signal'],
    ['Stop', 'grace_millis', 'above the maximum (1 h + 1 ms)', (ctx) => stop(ctx, fVarint(STOP.grace_millis, 3600001)),
      S.INVALID_ARGUMENT, 'grace_millis=3600001 is above the maximum'],
    ['Stop', 'grace_millis', 'INT64_MAX', (ctx) => stop(ctx, fVarint(STOP.grace_millis, (1n << 63n) - 1n)), S.INVALID_ARGUMENT,
      'grace_millis=9223372036854775807 is above the maximum'],
    ['Stop', 'id', 'wrong wire type (varint)', () => fVarint(STOP.id, 1), S.INVALID_ARGUMENT, MALFORMED],
  );
  rows.push(...garbageRows('Stop'));

  // Status.
  rows.push(...idRows('Status', (id) => idOnly(id)));
  rows.push(['Status', 'id', 'wrong wire type (fixed32)', () => Buffer.from([0x0d, 1, 2, 3, 4]), S.INVALID_ARGUMENT, MALFORMED]);
  rows.push(...garbageRows('Status'));

  // Remove: the same id checks; no row may remove a job the others use.
  rows.push(...idRows('Remove', (id) => idOnly(id)));
  rows.push(['Remove', 'id', 'wrong wire type (fixed32)', () => Buffer.from([0x0d, 1, 2, 3, 4]), S.INVALID_ARGUMENT, MALFORMED]);
  rows.push(...garbageRows('Remove'));

  // Stream.
  rows.push(...idRows('Stream', (id) => msg(idOnly(id), fVarint(STREAM.no_follow, 1))));
  const strm = (id, ...f) => msg(fBytes(STREAM.id, id), fVarint(STREAM.no_follow, 1), ...f);
  rows.push(
    ['Stream', 'select', 'unknown enum value 3', (ctx) => strm(ctx.ok, fVarint(STREAM.select, 3)), S.INVALID_ARGUMENT,
      'unknown output selection 3'],
    ['Stream', 'select', 'unknown enum value -1', (ctx) => strm(ctx.ok, fVarint(STREAM.select, -1)), S.INVALID_ARGUMENT,
      'unknown output selection -1'],
    ['Stream', 'offset', "past the end of an ended job's output", (ctx) => strm(ctx.ended, fVarint(STREAM.offset, 1000)),
      S.OUT_OF_RANGE, 'offset 1000 is past the end'],
    ['Stream', 'offset', '2^64-1 on an ended job', (ctx) => strm(ctx.ended, fVarint(STREAM.offset, U64_MAX)), S.OUT_OF_RANGE,
      'offset 18446744073709551615 is past the end'],
    ['Stream', 'no_follow', 'wrong wire type (length-delimited)', (ctx) => msg(fBytes(STREAM.id, ctx.ok), fBytes(STREAM.no_follow, 'x')),
      S.INVALID_ARGUMENT, MALFORMED],
  );
  rows.push(...garbageRows('Stream'));

  // List and Ping take no fields: garbage is refused; more than 1 MiB too.
  for (const rpc of ['List', 'Ping']) {
    rows.push(...garbageRows(rpc));
    rows.push([rpc, '(unknown field 99)', 'oversized (1 MiB+)', () => fBytes(99, repeat('z', BIG)), S.RESOURCE_EXHAUSTED, TOO_BIG]);
  }
  return rows;
}

// Edge values that must be accepted (the other side of each boundary above).
function acceptRows() {
  const multibyte = repeat('€', 42) + 'ab'; // 128 bytes of UTF-8
  return [
    ['Start', 'name', 'exactly 128 bytes of multi-byte UTF-8', () => start({ name: multibyte })],
    ['Start', 'args', 'exactly 1024 of them', () => start({ args: Array(1024).fill('x') })],
    ['Start', 'args', 'total exactly 128 KiB', () => start({ args: [repeat('a', 128 * 1024 - 1)] })],
    ['Start', 'args', 'empty strings and newlines', () => start({ command: '/usr/bin/printf', args: ['', 'a\nb', '\u00e9\u{1F600}'] })],
    ['Start', 'limits', 'every limit at its maximum (rbps/wbps 1 GB/s)', () =>
      start({ limits: { cpu_millis: MAX_CPU, memory_bytes: 4n << 30n, io_riops: 1000000, io_wiops: 1000000, io_rbps: 1e9, io_wbps: 1e9, pids: 32768 } })],
    ['Start', 'limits.io_rbps/io_wbps', '2^64-1 (no maximum set on this server: no limit)', () =>
      start({ limits: { io_rbps: U64_MAX, io_wbps: U64_MAX } })],
    ['Start', 'limits', 'every limit at its minimum', () =>
      start({ limits: { cpu_millis: 10, memory_bytes: 1 << 20, io_riops: 1, io_wiops: 1, io_rbps: 1, io_wbps: 1, pids: 2 } })],
    ['Stream', 'offset', "exactly the end of an ended job's output", (ctx) =>
      msg(fBytes(STREAM.id, ctx.ended), fVarint(STREAM.offset, 13), fVarint(STREAM.no_follow, 1))],
    ['Stream', 'offset', "past the end of a live job's output (waits there; no_follow ends it)", (ctx) =>
      msg(fBytes(STREAM.id, ctx.ok), fVarint(STREAM.offset, U64_MAX), fVarint(STREAM.no_follow, 1))],
    ['Start', '(unknown field 99)', 'ignored, as proto3 requires', () => start({ extra: [fBytes(99, 'future'), fVarint(100, 7)] })],
    ['List', '(unknown field 5)', 'ignored', () => fVarint(5, 1)],
    ['Ping', '(unknown field 5)', 'ignored', () => fBytes(5, Buffer.from([0xff]))],
    ['Ping', '(empty request)', 'the normal case', () => Buffer.alloc(0)],
  ];
}

// ---- running it ----------------------------------------------------------------------------

async function pingOk(c) {
  const r = await call(c, 'Ping', Buffer.alloc(0));
  return r.code === S.OK && str(decode(r.messages[0]), 2) === 'alice';
}

// A status message a person can read: one line of printable text, not empty, not huge.
const plainWords = (s) => s.length > 0 && s.length <= 600 && /^[\x20-\x7e\u00a0-\uffff]+$/.test(s);

async function waitEnded(c, id) {
  for (let i = 0; i < 200; i++) {
    const r = await call(c, 'Status', idOnly(id));
    if (r.code === S.OK && num(decode(r.messages[0]), 7) === 0n) return true; // is_running false
    await new Promise((res) => setTimeout(res, 50));
  }
  return false;
}

async function main() {
  const alice = rawClient('alice');
  const bob = rawClient('bob');
  const ctx = {};

  // Setup: a live job of alice's (the target of well-formed ids), an ended one, one of bob's.
  let r = await call(alice, 'Start', start({ command: '/usr/bin/sleep', args: ['600'] }));
  if (r.code !== S.OK) {
    fail('setup: Start a sleeper as alice', `${codeName(r.code)}: ${r.details}`);
    return [alice, bob];
  }
  ctx.ok = str(decode(r.messages[0]), 1);
  r = await call(alice, 'Start', start({ command: '/usr/bin/echo', args: ['short output'] }));
  ctx.ended = r.code === S.OK ? str(decode(r.messages[0]), 1) : uuid();
  r = await call(bob, 'Start', start({ command: '/usr/bin/sleep', args: ['600'] }));
  ctx.bobs = r.code === S.OK ? str(decode(r.messages[0]), 1) : uuid();
  if (ctx.ended && (await waitEnded(alice, ctx.ended))) ok('setup: three jobs started, the echo one ended');
  else fail('setup: three jobs started, the echo one ended', 'the echo job did not end');

  const rows = table();
  console.log('# bad input table: RPC | field | value | expected code | message contains');
  for (const [rpc, field, cls, body, code, words] of rows) {
    const name = `${rpc} ${field} ${cls}: ${codeName(code)}`;
    const res = await call(alice, rpc, body(ctx));
    const wordsOk = words instanceof RegExp ? words.test(res.details) : res.details.includes(words);
    const alive = await pingOk(alice);
    console.log(`# | ${rpc} | ${field} | ${cls} | ${codeName(res.code)} | ${res.details.slice(0, 160)}`);
    if (res.code !== code) fail(name, `got ${codeName(res.code)} '${res.details}'`);
    else if (!wordsOk) fail(name, `message '${res.details}' does not contain '${words}'`);
    else if (!plainWords(res.details)) fail(name, `message is not one line of plain text: ${JSON.stringify(res.details)}`);
    else if (rpc === 'Stream' && res.messages.length) fail(name, `${res.messages.length} messages before the error`);
    else if (!alive) fail(name, 'the server did not answer Ping afterwards');
    else ok(name);
  }

  for (const [rpc, field, cls, body] of acceptRows()) {
    const name = `${rpc} ${field} ${cls}: OK`;
    const res = await call(alice, rpc, body(ctx));
    const alive = await pingOk(alice);
    console.log(`# | ${rpc} | ${field} | ${cls} | ${codeName(res.code)} | ${res.details.slice(0, 160)}`);
    if (res.code !== S.OK) fail(name, `got ${codeName(res.code)} '${res.details}'`);
    else if (!alive) fail(name, 'the server did not answer Ping afterwards');
    else ok(name);
  }

  // The jobs the table aimed at are untouched by it: alice's sleeper still runs (no Stop row
  // reached it), and a negative grace (INT64_MIN) is "kill at once", not an error.
  r = await call(alice, 'Status', idOnly(ctx.ok));
  if (r.code === S.OK && num(decode(r.messages[0]), 7) === 1n) ok("alice's sleeper still runs after every bad Stop");
  else fail("alice's sleeper still runs after every bad Stop", `${codeName(r.code)} ${r.details}`);
  r = await call(alice, 'Stop', msg(fBytes(STOP.id, ctx.ok), fVarint(STOP.grace_millis, I64_MIN)));
  const st = r.code === S.OK ? decode(r.messages[0]) : {};
  if (r.code === S.OK && num(st, 6) === 3n && num(st, 10) === 9n) ok('Stop grace_millis INT64_MIN: killed at once (SIGKILL)');
  else fail('Stop grace_millis INT64_MIN: killed at once (SIGKILL)', r.code ? `${codeName(r.code)} ${r.details}` : `state ${num(st, 6)} signal ${num(st, 10)}`);
  r = await call(bob, 'Stop', msg(fBytes(STOP.id, ctx.bobs), fVarint(STOP.grace_millis, -1)));
  if (r.code === S.OK) ok("bob's sleeper stopped");
  else fail("bob's sleeper stopped", `${codeName(r.code)} ${r.details}`);
  if (await pingOk(alice)) ok('Ping still answers at the end');
  else fail('Ping still answers at the end', 'no answer');
  return [alice, bob];
}

let clients = [];
main()
  .then((c) => {
    clients = c || [];
  })
  .catch((e) => fail('bad_input client', e && e.stack ? e.stack : e))
  .finally(() => {
    for (const c of clients) c.close();
    process.exitCode = summary('bad_input.js');
  });
