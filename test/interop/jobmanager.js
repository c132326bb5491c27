'use strict';
// jobmanager.v1.JobManager, the published second design's service, against a real
// `runjob serve`, from a client built from that design's proto alone (proto/jobmanager.proto)
// over the server's port and mTLS: every RPC, its status codes, and the authorization rules
// (another user's job is NOT_FOUND; administrator sees and stops every job). Started by
// test/interop/run.sh:
//   RJ_PORT, RJ_CERTS (alice, bob, administrator; root-ca-cert.pem), RJ_ROGUE (another CA's
//   alice), RJ_JOBMANAGER_PROTO
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { ok, fail, expectEq, expectCode, summary, ...common } = require('./common');

const def = protoLoader.loadSync(process.env.RJ_JOBMANAGER_PROTO, {
  keepCase: true,
  enums: String,
  defaults: true,
});
const pkg = grpc.loadPackageDefinition(def);
const JobManager = pkg.jobmanager && pkg.jobmanager.v1 && pkg.jobmanager.v1.JobManager;

// The server's CA is trusted whatever dir the user's certificate comes from (common.js).
const client = (user, dir) => common.client(JobManager, user, { dir });

const deadline = () => ({ deadline: new Date(Date.now() + 20000) });
const unary = (c, method, req) =>
  new Promise((resolve) => c[method](req, deadline(), (err, res) => resolve({ err, res })));

// StreamOutput until it ends: { err, out (Buffer), chunks }
const streamOutput = (c, req) =>
  new Promise((resolve) => {
    const parts = [];
    const s = c.StreamOutput(req);
    s.on('data', (m) => parts.push(m.output));
    s.on('error', (err) => resolve({ err, out: Buffer.concat(parts), chunks: parts.length }));
    s.on('end', () => resolve({ err: null, out: Buffer.concat(parts), chunks: parts.length }));
  });

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitEnded(c, id) {
  for (let i = 0; i < 200; i++) {
    const r = await unary(c, 'Query', { id });
    if (r.err || !r.res.isRunning) return r;
    await sleep(50);
  }
  return { err: new Error('still running after 10 s') };
}

async function main() {
  if (!JobManager) {
    fail('jobmanager: proto loads jobmanager.v1.JobManager', 'no service');
    return;
  }
  const alice = client('alice');
  const bob = client('bob');
  const admin = client('administrator');

  // Start, and the id the design promises.
  let r = await unary(alice, 'Start', { name: 'hello', programPath: '/bin/echo', arguments: ['hello', 'world'] });
  if (r.err) {
    fail('jobmanager: Start', `${grpc.status[r.err.code]}: ${r.err.details}`);
    return;
  }
  ok('jobmanager: Start answers a Job');
  const hello = r.res.id && r.res.id.id;
  if (UUID4.test(hello || '')) ok('jobmanager: Job.id is a JobId holding a UUIDv4');
  else fail('jobmanager: Job.id is a JobId holding a UUIDv4', JSON.stringify(r.res));
  expectEq('jobmanager: Job.name is the name asked for', 'hello', r.res.name);

  // StreamOutput from the first byte, ending with the job.
  let s = await streamOutput(alice, { jobId: { id: hello }, outputStream: 'UNSPECIFIED' });
  expectEq('jobmanager: StreamOutput sends the output and ends OK', ['hello world\n', null],
    [s.out.toString(), s.err && s.err.details]);

  r = await waitEnded(alice, hello);
  if (r.err) fail('jobmanager: Query', r.err.details || r.err.message);
  else {
    const st = r.res;
    expectEq('jobmanager: Query of an exited job',
      { id: hello, name: 'hello', owner: 'alice', isRunning: false, exitCode: 0, signalNumber: 0, errorMessage: '' },
      { id: st.job && st.job.id && st.job.id.id, name: st.job && st.job.name, owner: st.owner, isRunning: st.isRunning,
        exitCode: st.exitCode, signalNumber: st.signalNumber, errorMessage: st.errorMessage });
  }

  // Both streams, as written; each alone.
  r = await unary(alice, 'Start', {
    name: 'both', programPath: '/bin/sh',
    arguments: ['-c', 'echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2; exit 3'],
  });
  const both = r.res && r.res.id.id;
  s = await streamOutput(alice, { jobId: { id: both }, outputStream: 'UNSPECIFIED' });
  expectEq('jobmanager: UNSPECIFIED streams stdout and stderr interleaved as written', 'out1\nerr1\nout2\n', s.out.toString());
  s = await streamOutput(alice, { jobId: { id: both }, outputStream: 'STDOUT' });
  expectEq('jobmanager: STDOUT streams stdout alone', 'out1\nout2\n', s.out.toString());
  s = await streamOutput(alice, { jobId: { id: both }, outputStream: 'STDERR' });
  expectEq('jobmanager: STDERR streams stderr alone', 'err1\n', s.out.toString());
  r = await waitEnded(alice, both);
  expectEq('jobmanager: exitCode is the job\'s', 3, r.res && r.res.exitCode);

  // A live stream follows a running job to its end.
  r = await unary(alice, 'Start', {
    name: 'live', programPath: '/bin/sh', arguments: ['-c', 'echo a; sleep 0.5; echo b'],
  });
  s = await streamOutput(bob, { jobId: { id: r.res.id.id } });
  expectCode('jobmanager: another user\'s StreamOutput is NOT_FOUND', grpc.status.NOT_FOUND, s);
  s = await streamOutput(alice, { jobId: { id: r.res.id.id } });
  expectEq('jobmanager: a live StreamOutput follows the job to its end', ['a\nb\n', null], [s.out.toString(), s.err]);

  // Names, Stop with SIGKILL.
  r = await unary(alice, 'Start', { name: 'sleeper', programPath: '/bin/sleep', arguments: ['60'] });
  const sleeper = r.res && r.res.id.id;
  r = await unary(alice, 'Start', { name: 'sleeper', programPath: '/bin/sleep', arguments: ['60'] });
  expectCode('jobmanager: a name in use among the user\'s running jobs is ALREADY_EXISTS', grpc.status.ALREADY_EXISTS, r);
  r = await unary(bob, 'Start', { name: 'sleeper', programPath: '/bin/true', arguments: [] });
  expectEq('jobmanager: names are per user', null, r.err && r.err.details);
  r = await unary(alice, 'Query', { id: sleeper });
  expectEq('jobmanager: Query of a running job: isRunning, a pid, exitCode -1',
    [true, true, -1], [r.res && r.res.isRunning, (r.res && r.res.pid) > 0, r.res && r.res.exitCode]);
  r = await unary(bob, 'Stop', { id: sleeper });
  expectCode('jobmanager: another user\'s Stop is NOT_FOUND', grpc.status.NOT_FOUND, r);
  r = await unary(alice, 'Stop', { id: sleeper });
  expectEq('jobmanager: Stop answers a NilMessage', [null, {}], [r.err && r.err.details, r.res]);
  r = await unary(alice, 'Query', { id: sleeper });
  expectEq('jobmanager: after Stop: not running, signalNumber 9, exitCode -1',
    [false, 9, -1], [r.res && r.res.isRunning, r.res && r.res.signalNumber, r.res && r.res.exitCode]);
  r = await unary(alice, 'Stop', { id: sleeper });
  expectEq('jobmanager: Stop of an ended job has no effect (OK)', null, r.err && r.err.details);
  r = await unary(alice, 'Start', { name: 'sleeper', programPath: '/bin/true', arguments: [] });
  expectEq('jobmanager: the name is free again once the job has ended', null, r.err && r.err.details);

  // The administrator stops anyone's job.
  r = await unary(alice, 'Start', { name: 'admin-stops-me', programPath: '/bin/sleep', arguments: ['60'] });
  const victim = r.res && r.res.id.id;
  r = await unary(admin, 'Stop', { id: victim });
  expectEq('jobmanager: administrator may Stop another user\'s job', null, r.err && r.err.details);
  r = await unary(alice, 'Query', { id: victim });
  expectEq('jobmanager: ... and it was killed', 9, r.res && r.res.signalNumber);

  // List: the caller's jobs; administrator's: everyone's.
  r = await unary(alice, 'List', {});
  const aliceList = (r.res && r.res.jobStatusList) || [];
  expectEq('jobmanager: List holds the caller\'s jobs only',
    [true, true], [aliceList.length >= 5, aliceList.every((j) => j.owner === 'alice')]);
  expectEq('jobmanager: List entries carry the Job (id and name)', true,
    aliceList.some((j) => j.job && j.job.id && j.job.id.id === hello && j.job.name === 'hello'));
  r = await unary(bob, 'List', {});
  expectEq('jobmanager: another user\'s List holds none of alice\'s jobs', false,
    ((r.res && r.res.jobStatusList) || []).some((j) => j.owner === 'alice'));
  r = await unary(admin, 'List', {});
  const owners = new Set(((r.res && r.res.jobStatusList) || []).map((j) => j.owner));
  expectEq('jobmanager: administrator\'s List holds every user\'s jobs', [true, true], [owners.has('alice'), owners.has('bob')]);
  r = await unary(admin, 'Query', { id: hello });
  expectEq('jobmanager: administrator may Query another user\'s job', 'alice', r.res && r.res.owner);
  r = await unary(bob, 'Query', { id: hello });
  expectCode('jobmanager: another user\'s Query is NOT_FOUND', grpc.status.NOT_FOUND, r);
  const bobsNotFound = r.err && r.err.details;
  r = await unary(bob, 'Query', { id: '6f1c1f9e-0a8b-4c39-9f2e-3b2a1c0d9e8f' });
  expectEq('jobmanager: ... in the same words as an unknown id', bobsNotFound && bobsNotFound.replace(hello, 'X'),
    r.err && r.err.details.replace('6f1c1f9e-0a8b-4c39-9f2e-3b2a1c0d9e8f', 'X'));

  // Bad input.
  r = await unary(alice, 'Query', { id: '' });
  expectCode('jobmanager: Query of an empty id is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, r);
  r = await unary(alice, 'Query', { id: 'not-a-uuid' });
  expectCode('jobmanager: Query of a malformed id is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, r);
  r = await unary(alice, 'Stop', { id: 'not-a-uuid' });
  expectCode('jobmanager: Stop of a malformed id is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, r);
  r = await unary(alice, 'Start', { name: 'rel', programPath: 'bin/true', arguments: [] });
  expectCode('jobmanager: a relative programPath is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, r);
  expectEq('jobmanager: ... and the message names programPath', true, !!(r.err && /programPath/.test(r.err.details)));
  r = await unary(alice, 'Start', { name: '', programPath: '', arguments: [] });
  expectCode('jobmanager: an empty programPath is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, r);
  r = await unary(alice, 'Start', { name: 'bad\nname', programPath: '/bin/true', arguments: [] });
  expectCode('jobmanager: a name with a control character is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, r);
  r = await unary(alice, 'Start', { name: 'nope', programPath: '/nonexistent/program', arguments: [] });
  expectCode('jobmanager: a program that does not exist is FAILED_PRECONDITION', grpc.status.FAILED_PRECONDITION, r);
  s = await streamOutput(alice, {});
  expectCode('jobmanager: StreamOutput without a jobId is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, s);
  s = await streamOutput(alice, { jobId: { id: hello }, outputStream: 7 });
  expectCode('jobmanager: an unknown outputStream is INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT, s);

  // Another CA's certificate for the same user name gets nowhere.
  if (process.env.RJ_ROGUE) {
    const rogue = client('alice', process.env.RJ_ROGUE);
    r = await unary(rogue, 'List', {});
    expectEq('jobmanager: a certificate from another CA is refused', true, !!r.err);
    rogue.close();
  }
  for (const c of [alice, bob, admin]) c.close();
}

main()
  .catch((e) => fail('jobmanager: ran to the end', e.stack || e))
  .finally(() => process.exit(summary('jobmanager.js')));
