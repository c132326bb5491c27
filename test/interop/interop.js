'use strict';
// runjob interop tier: a Node.js @grpc/grpc-js client (not runjob's C client) drives every RPC
// of a real `runjob serve` over mutual TLS 1.3 and checks the answers. Prints one
// "PASS: name" or "FAIL: name -- why" line per check (test/run.sh counts them) and exits
// non-zero when any check failed. Started by test/interop/run.sh, which sets:
//   RJ_PORT   the server's port on 127.0.0.1
//   RJ_CERTS  folder of `runjob certs` output (alice, bob, administrator)
//   RJ_ROGUE  folder of certificates from another CA (user alice)
//   RJ_PROTO  path of proto/runjob.proto

const crypto = require('crypto');
const { execFileSync } = require('child_process');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { ok, fail, expectEq, expectTrue, expectCode, errText, summary, ...common } = require('./common');

const ROGUE = process.env.RJ_ROGUE;
const PROTO = process.env.RJ_PROTO;
const RPC_TIMEOUT_MS = 20000;

// ---- proto and clients ----------------------------------------------------------------------

const packageDefinition = protoLoader.loadSync(PROTO, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const pkg = grpc.loadPackageDefinition(packageDefinition);
const JobManager = pkg.runjob && pkg.runjob.v1 && pkg.runjob.v1.JobManager;

// client(user, {dir, tlsOptions}): a JobManager client for USER (common.js's credentials).
const clients = [];
function client(user, { dir, tlsOptions } = {}) {
  const c = common.client(JobManager, user, {
    dir,
    tlsOptions,
    options: {
      'grpc.max_receive_message_length': 16 << 20,
      // A fresh connection per client: the negative TLS cases must not reuse a good channel.
      'grpc.use_local_subchannel_pool': 1,
    },
  });
  clients.push(c);
  return c;
}

function deadline(ms = RPC_TIMEOUT_MS) {
  return new Date(Date.now() + ms);
}

// unary(client, method, request): resolves {err, res}; never rejects.
function unary(c, method, request, ms) {
  return new Promise((resolve) => {
    c[method](request, { deadline: deadline(ms) }, (err, res) => resolve({ err, res }));
  });
}

// stream(client, request): resolves {err, chunks} once the stream has ended or failed.
function stream(c, request, ms = 60000) {
  return new Promise((resolve) => {
    const chunks = [];
    let done = false;
    const call = c.Stream(request, { deadline: deadline(ms) });
    call.on('data', (m) => chunks.push(m));
    call.on('error', (err) => {
      if (!done) {
        done = true;
        resolve({ err, chunks });
      }
    });
    call.on('status', (st) => {
      if (!done && st.code === grpc.status.OK) {
        done = true;
        resolve({ err: null, chunks });
      }
    });
  });
}

function expectOk(name, r) {
  if (!r.err) {
    ok(name);
    return true;
  }
  fail(name, errText(r.err));
  return false;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// pollStatus(client, id, pred): Status until pred(status) holds (or ~10 s pass).
async function pollStatus(c, id, pred, ms = 10000) {
  const end = Date.now() + ms;
  let r;
  do {
    r = await unary(c, 'Status', { id });
    if (!r.err && pred(r.res)) return r;
    await sleep(50);
  } while (Date.now() < end);
  return r;
}

// ---- the checks -----------------------------------------------------------------------------

async function main() {
  if (!JobManager) {
    fail('proto: runjob.v1.JobManager loads', `no service in ${PROTO}`);
    return;
  }
  const methods = Object.keys(JobManager.service).sort();
  expectEq('proto: service has the nine RPCs', ['Input', 'List', 'Metrics', 'Ping', 'Remove', 'Start', 'Status', 'Stop', 'Stream'], methods);
  expectTrue(
    'proto: keepCase keeps snake_case fields',
    'peer_cn' in JobManager.service.Ping.responseType.type.field.reduce((o, f) => ((o[f.name] = 1), o), {}),
    'peer_cn field not found',
  );

  const alice = client('alice');
  const bob = client('bob');
  const admin = client('administrator');

  // Ping: identity as the server sees it.
  let r = await unary(alice, 'Ping', {});
  const reachable = !r.err;
  if (expectOk('Ping as alice succeeds', r)) {
    expectEq('Ping as alice: peer_cn', 'alice', r.res.peer_cn);
    expectEq('Ping as alice: is_admin', false, r.res.is_admin);
    expectTrue('Ping: version names runjob', /^runjob /.test(r.res.version), `version '${r.res.version}'`);
  }
  r = await unary(admin, 'Ping', {});
  if (expectOk('Ping as administrator succeeds', r)) {
    expectEq('Ping as administrator: peer_cn', 'administrator', r.res.peer_cn);
    expectEq('Ping as administrator: is_admin', true, r.res.is_admin);
  }
  r = await unary(admin, 'Metrics', {});
  if (expectOk('Metrics as administrator succeeds', r)) {
    expectTrue('Metrics: the Prometheus text, with the calls so far',
      /^runjob_calls_total\{method="Ping",code="OK"\} \d+$/m.test(r.res.text), r.res.text.slice(0, 200));
  }
  expectCode('Metrics as alice: PERMISSION_DENIED', grpc.status.PERMISSION_DENIED, await unary(alice, 'Metrics', {}));

  // Start a job with known, deterministic output.
  const N = '2000000'; // ~15 MB: many messages, so flow control is exercised
  const expected = execFileSync('/usr/bin/seq', ['1', N], { maxBuffer: 64 << 20 });
  r = await unary(alice, 'Start', { name: 'interop-seq', command: '/usr/bin/seq', args: ['1', N] });
  let seqId = null;
  if (expectOk('Start /usr/bin/seq as alice', r)) {
    seqId = r.res.id;
    expectTrue('Start: id is a UUIDv4', UUID4.test(seqId), `id '${seqId}'`);
    expectEq('Start: name echoed', 'interop-seq', r.res.name);
  }

  if (seqId) {
    // Stream, following, from offset 0: every byte, in order, then the final status.
    const s = await stream(alice, { id: seqId });
    if (expectOk('Stream of the seq job ends with OK', { err: s.err })) {
      const dataChunks = s.chunks.filter((c) => c.data.length > 0);
      const data = Buffer.concat(dataChunks.map((c) => c.data));
      console.log(`# stream: ${data.length} bytes in ${dataChunks.length} messages`);
      expectEq('Stream: byte count', expected.length, data.length);
      expectEq('Stream: sha256 equals local seq output', sha256(expected), sha256(data));
      let pos = 0;
      let contiguous = true;
      for (const c of dataChunks) {
        if (String(c.offset) !== String(pos)) {
          contiguous = false;
          break;
        }
        pos += c.data.length;
      }
      expectTrue('Stream: chunk offsets are contiguous', contiguous, `chunk offset ${pos} expected`);
      expectTrue(
        'Stream: chunks carry stdout and a time',
        dataChunks.length > 0 && dataChunks.every((c) => c.stream === 'OUTPUT_STREAM_STDOUT' && Number(c.time_ms) > 0),
        `first chunk: ${JSON.stringify({ ...(dataChunks[0] || {}), data: undefined })}`,
      );
      const last = s.chunks[s.chunks.length - 1];
      const fin = last && last.final_status;
      if (fin && last.data.length === 0) {
        ok('Stream: last message carries the final status');
        expectEq('Stream: final status EXITED 0', ['JOB_STATE_EXITED', 0, false], [fin.state, fin.exit_code, fin.is_running]);
      } else {
        fail('Stream: last message carries the final status', `last message: ${JSON.stringify(last ? { ...last, data: last.data.length } : null).slice(0, 300)}`);
      }
    }

    // Stream without following, from an offset: exactly the rest of the output.
    const off = 1000;
    const s2 = await stream(alice, { id: seqId, offset: off, no_follow: true, select: 'OUTPUT_SELECT_STDOUT' });
    if (expectOk('Stream no_follow from offset 1000 ends with OK', { err: s2.err })) {
      const data = Buffer.concat(s2.chunks.map((c) => c.data));
      expectEq('Stream no_follow from offset: sha256 of the rest', sha256(expected.subarray(off)), sha256(data));
      expectEq('Stream no_follow from offset: first offset', String(off), s2.chunks.length ? String(s2.chunks[0].offset) : null);
    }

    // Status of the ended job.
    r = await unary(alice, 'Status', { id: seqId });
    if (expectOk('Status of the seq job', r)) {
      const st = r.res;
      expectEq(
        'Status: owner, id, name, command, args',
        ['alice', seqId, 'interop-seq', '/usr/bin/seq', ['1', N]],
        [st.owner, st.id, st.name, st.command, st.args],
      );
      expectEq('Status: EXITED, exit 0, not running, pid 0', ['JOB_STATE_EXITED', 0, false, 0], [st.state, st.exit_code, st.is_running, st.pid]);
      expectTrue(
        'Status: start and end times',
        Number(st.start_time_ms) > 1.6e12 && Number(st.end_time_ms) >= Number(st.start_time_ms),
        `start ${st.start_time_ms} end ${st.end_time_ms}`,
      );
      expectEq('Status: usage.output_bytes', String(expected.length), st.usage ? String(st.usage.output_bytes) : null);
      expectEq('Status: network mode NONE', 'NETWORK_MODE_NONE', st.network);
    }
    r = await unary(admin, 'Status', { id: seqId });
    if (expectOk('Status of alice\'s job as administrator', r)) expectEq('Status as administrator: owner', 'alice', r.res.owner);
  }

  // Stop a sleeping job: SIGTERM kills sleep, so the final status is KILLED by signal 15.
  r = await unary(alice, 'Start', { command: '/usr/bin/sleep', args: ['300'] });
  let sleepId = null;
  if (expectOk('Start /usr/bin/sleep 300 as alice', r)) sleepId = r.res.id;
  if (sleepId) {
    r = await pollStatus(alice, sleepId, (st) => st.state === 'JOB_STATE_RUNNING');
    expectTrue(
      'Status of the sleep job: RUNNING',
      !r.err && r.res.state === 'JOB_STATE_RUNNING' && r.res.is_running && r.res.pid > 0,
      r.err ? errText(r.err) : `state ${r.res.state} is_running ${r.res.is_running} pid ${r.res.pid}`,
    );
    // bob must not be able to stop it: NOT_FOUND, like an unknown id.
    expectCode('Stop of alice\'s job as bob: NOT_FOUND', grpc.status.NOT_FOUND, await unary(bob, 'Stop', { id: sleepId }));
    const t0 = Date.now();
    r = await unary(alice, 'Stop', { id: sleepId, signal: 0, grace_millis: 5000 });
    if (expectOk('Stop of the sleep job', r)) {
      const st = r.res;
      expectEq('Stop: final status KILLED by SIGTERM, not running', ['JOB_STATE_KILLED', 15, false], [st.state, st.signal, st.is_running]);
      expectTrue('Stop: returned well before the grace period ended', Date.now() - t0 < 4000, `${Date.now() - t0} ms`);
      expectTrue('Stop: end time set', Number(st.end_time_ms) > 0, `end_time_ms ${st.end_time_ms}`);
    }
    r = await unary(alice, 'Status', { id: sleepId });
    if (expectOk('Status after Stop', r)) expectEq('Status after Stop: KILLED', ['JOB_STATE_KILLED', 15, false], [r.res.state, r.res.signal, r.res.is_running]);
  }

  // A live, following stream: output arrives while the job runs, stderr kept apart by select.
  const script = 'for i in 0 1 2 3 4; do echo out$i; echo err$i >&2; sleep 0.2; done';
  r = await unary(alice, 'Start', { command: '/bin/sh', args: ['-c', script] });
  if (expectOk('Start a slow /bin/sh writer', r)) {
    const id = r.res.id;
    const [so, se] = await Promise.all([
      stream(alice, { id, select: 'OUTPUT_SELECT_STDOUT' }),
      stream(alice, { id, select: 'OUTPUT_SELECT_STDERR' }),
    ]);
    const text = (s) => Buffer.concat(s.chunks.map((c) => c.data)).toString();
    if (expectOk('Live Stream of stdout ends with OK', { err: so.err })) {
      expectEq('Live Stream: stdout only, complete', 'out0\nout1\nout2\nout3\nout4\n', text(so));
      const times = so.chunks.filter((c) => c.data.length).map((c) => Number(c.time_ms));
      expectTrue('Live Stream: output arrived over time, not all at the end',
        times.length >= 2 && times[times.length - 1] - times[0] >= 400, `chunk times ${JSON.stringify(times)}`);
      const fin = so.chunks.length && so.chunks[so.chunks.length - 1].final_status;
      expectEq('Live Stream: final status EXITED 0', ['JOB_STATE_EXITED', 0], fin ? [fin.state, fin.exit_code] : null);
    }
    if (expectOk('Live Stream of stderr ends with OK', { err: se.err })) {
      expectEq('Live Stream: stderr only, complete', 'err0\nerr1\nerr2\nerr3\nerr4\n', text(se));
      expectTrue('Live Stream: stderr chunks marked STDERR',
        se.chunks.filter((c) => c.data.length).every((c) => c.stream === 'OUTPUT_STREAM_STDERR'), 'a chunk not marked STDERR');
    }
  }

  // A client that cancels a following stream: CANCELLED for it, and the server carries on.
  r = await unary(alice, 'Start', { command: '/bin/sh', args: ['-c', 'while :; do echo tick; sleep 0.05; done'] });
  if (expectOk('Start an endless ticker', r)) {
    const id = r.res.id;
    const got = await new Promise((resolve) => {
      let n = 0;
      const call = alice.Stream({ id }, { deadline: deadline() });
      call.on('data', () => {
        if (++n === 3) call.cancel();
      });
      call.on('error', (err) => resolve({ err, n }));
      call.on('end', () => resolve({ err: null, n }));
    });
    expectTrue('Stream cancelled by the client after 3 messages: CANCELLED',
      got.err && got.err.code === grpc.status.CANCELLED && got.n >= 3, got.err ? errText(got.err) : `ended after ${got.n} messages`);
    r = await unary(alice, 'Stop', { id, grace_millis: -1 });
    expectTrue('Stop with grace_millis -1 (kill at once): KILLED by SIGKILL',
      !r.err && r.res.state === 'JOB_STATE_KILLED' && r.res.signal === 9, r.err ? errText(r.err) : `state ${r.res.state} signal ${r.res.signal}`);
    expectOk('Ping after the cancelled stream', await unary(alice, 'Ping', {}));
  }

  // List: own jobs for a user, every job for the administrator.
  const ids = (res) => (res && res.jobs ? res.jobs.map((j) => j.id) : []);
  r = await unary(alice, 'List', {});
  if (expectOk('List as alice', r)) {
    expectTrue('List as alice: both jobs, oldest first',
      seqId && sleepId && ids(r.res).indexOf(seqId) >= 0 && ids(r.res).indexOf(seqId) < ids(r.res).indexOf(sleepId),
      `ids ${JSON.stringify(ids(r.res))}`);
    expectTrue('List as alice: only alice\'s jobs', r.res.jobs.every((j) => j.owner === 'alice'), 'a job of another owner');
  }
  r = await unary(bob, 'List', {});
  if (expectOk('List as bob', r)) {
    expectTrue('List as bob: none of alice\'s jobs', !ids(r.res).includes(seqId) && !ids(r.res).includes(sleepId), `ids ${JSON.stringify(ids(r.res))}`);
  }
  r = await unary(admin, 'List', {});
  if (expectOk('List as administrator', r)) {
    expectTrue('List as administrator: alice\'s jobs included', seqId && ids(r.res).includes(seqId) && ids(r.res).includes(sleepId), `ids ${JSON.stringify(ids(r.res))}`);
  }

  // Error codes.
  if (seqId) {
    const unknown = crypto.randomUUID();
    const rb = await unary(bob, 'Status', { id: seqId });
    expectCode('Status of alice\'s job as bob: NOT_FOUND', grpc.status.NOT_FOUND, rb);
    const ru = await unary(alice, 'Status', { id: unknown });
    expectCode('Status of an unknown id: NOT_FOUND', grpc.status.NOT_FOUND, ru);
    if (rb.err && ru.err) {
      const norm = (e, id) => (e.details || '').split(id).join('<id>');
      expectEq('NOT_FOUND for another user\'s job reads exactly like an unknown id', norm(ru.err, unknown), norm(rb.err, seqId));
    }
    const sb = await stream(bob, { id: seqId, no_follow: true });
    expectCode('Stream of alice\'s job as bob: NOT_FOUND', grpc.status.NOT_FOUND, { err: sb.err, res: sb.chunks.length ? `${sb.chunks.length} chunks` : null });
  }
  expectCode('Start with a relative path: INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT,
    await unary(alice, 'Start', { command: 'usr/bin/seq', args: ['1', '3'] }));
  expectCode('Start with an empty command: INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT,
    await unary(alice, 'Start', { command: '' }));
  r = await unary(alice, 'Status', { id: '../../etc/passwd' });
  expectTrue('Status with a malformed id: NOT_FOUND or INVALID_ARGUMENT',
    r.err && (r.err.code === grpc.status.NOT_FOUND || r.err.code === grpc.status.INVALID_ARGUMENT),
    r.err ? errText(r.err) : 'the call succeeded');

  expectCode('Start above the server\'s memory maximum: INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT,
    await unary(alice, 'Start', { command: '/usr/bin/true', limits: { memory_bytes: '999999999999999999' } }));
  expectCode('Start with host network on a server that does not allow it: PERMISSION_DENIED', grpc.status.PERMISSION_DENIED,
    await unary(alice, 'Start', { command: '/usr/bin/true', network: 'NETWORK_MODE_HOST' }));
  // Names: unique among the caller's running jobs only.
  const d1 = await unary(alice, 'Start', { name: 'interop-dup', command: '/usr/bin/sleep', args: ['60'] });
  if (expectOk('Start a named sleeper', d1)) {
    expectCode('Start a second running job with the same name: ALREADY_EXISTS', grpc.status.ALREADY_EXISTS,
      await unary(alice, 'Start', { name: 'interop-dup', command: '/usr/bin/sleep', args: ['60'] }));
    const b1 = await unary(bob, 'Start', { name: 'interop-dup', command: '/usr/bin/true' });
    expectOk('Another user may use the same name', b1);
    r = await unary(admin, 'Stop', { id: d1.res.id, grace_millis: -1 });
    expectTrue('Stop of alice\'s job by the administrator',
      !r.err && r.res.owner === 'alice' && r.res.state === 'JOB_STATE_KILLED', r.err ? errText(r.err) : `owner ${r.res.owner} state ${r.res.state}`);
  }

  // Remove: an ended job goes for its owner; bob's attempt reads like an unknown id.
  if (seqId) {
    expectCode('Remove of alice\'s job as bob: NOT_FOUND', grpc.status.NOT_FOUND, await unary(bob, 'Remove', { id: seqId }));
    r = await unary(alice, 'Remove', { id: seqId });
    if (expectOk('Remove of an ended job as alice', r)) expectEq('Remove: the id echoed', seqId, r.res.id);
    expectCode('Status after Remove: NOT_FOUND', grpc.status.NOT_FOUND, await unary(alice, 'Status', { id: seqId }));
  }

  // An unknown method (and an unknown service) on a good channel: UNIMPLEMENTED, not a hang.
  const raw = (c, method) =>
    new Promise((resolve) => {
      c.makeUnaryRequest(method, (b) => b, (b) => b, Buffer.alloc(0), { deadline: deadline(10000) }, (err, res) => resolve({ err, res }));
    });
  expectCode('Unknown method: UNIMPLEMENTED', grpc.status.UNIMPLEMENTED, await raw(alice, '/runjob.v1.JobManager/Nope'));
  expectCode('Unknown service: UNIMPLEMENTED', grpc.status.UNIMPLEMENTED, await raw(alice, '/nope.v1.Nope/Ping'));

  // TLS: a client capped at TLS 1.2 is refused; so are no certificate and another CA's certificate.
  // (Each uses its own channel; a failure is UNAVAILABLE at the gRPC level.)
  const refused = async (name, c) => {
    if (!reachable) {
      fail(name, 'the good client could not reach the server either, so a refusal proves nothing');
      return;
    }
    const x = await unary(c, 'Ping', {}, 10000);
    if (x.err && x.err.code === grpc.status.UNAVAILABLE) ok(name);
    else if (x.err) fail(name, `expected UNAVAILABLE (handshake refused), got ${errText(x.err)}`);
    else fail(name, `Ping succeeded: peer_cn '${x.res.peer_cn}'`);
  };
  await refused('TLS 1.2-only client (maxVersion TLSv1.2) refused',
    client('alice', { tlsOptions: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } }));
  await refused('client without a certificate refused', client(null));
  if (ROGUE) {
    // The rogue client still trusts the real server CA, so only its own certificate is at fault.
    await refused('client certificate from another CA refused', client('alice', { dir: ROGUE }));
  } else {
    fail('client certificate from another CA refused', 'RJ_ROGUE not set');
  }
  // The good client still works after all that.
  r = await unary(alice, 'Ping', {});
  expectOk('Ping as alice still works at the end', r);
}

main()
  .catch((e) => fail('interop client', e && e.stack ? e.stack : e))
  .finally(() => {
    for (const c of clients) c.close();
    process.exitCode = summary('interop.js');
  });
