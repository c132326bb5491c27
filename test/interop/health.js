'use strict';
// grpc.health.v1.Health against a real `runjob serve`, from a client built from the published
// health proto alone (proto/health.proto), over the server's port and mTLS: Check for the
// server, for its service and for an unknown one; Watch, which hears NOT_SERVING when the
// server is sent SIGTERM, and ends. Started by test/interop/run.sh last (it stops the server):
//   RJ_PORT, RJ_CERTS (as interop.js), RJ_HEALTH_PROTO, RJ_SERVER_PID
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { fail, expectEq, summary, ...common } = require('./common');

const SERVER_PID = Number(process.env.RJ_SERVER_PID);

const def = protoLoader.loadSync(process.env.RJ_HEALTH_PROTO, { keepCase: true, enums: String });
const Health = grpc.loadPackageDefinition(def).grpc.health.v1.Health;

const client = (user) => common.client(Health, user);

const check = (c, service) =>
  new Promise((resolve) =>
    c.Check({ service }, { deadline: new Date(Date.now() + 10000) }, (err, res) =>
      resolve({ err, res })));

async function main() {
  const c = client('alice');
  let r = await check(c, '');
  expectEq('health: Check of the server is SERVING', 'SERVING', r.err ? r.err.message : r.res.status);
  r = await check(c, 'runjob.v1.JobManager');
  expectEq('health: Check of its service is SERVING', 'SERVING', r.err ? r.err.message : r.res.status);
  r = await check(c, 'jobmanager.v1.JobManager');
  expectEq('health: Check of the published design\'s service is SERVING', 'SERVING', r.err ? r.err.message : r.res.status);
  r = await check(c, 'no.such.Service');
  expectEq('health: Check of an unknown service is NOT_FOUND', grpc.status.NOT_FOUND, r.err && r.err.code);
  r = await check(client('bob'), '');
  expectEq('health: any authenticated user may ask', 'SERVING', r.err ? r.err.message : r.res.status);

  const unknown = [];
  const uw = c.Watch({ service: 'no.such.Service' });
  uw.on('data', (m) => unknown.push(m.status));
  uw.on('error', () => {});
  const seen = [];
  const ended = new Promise((resolve) => {
    const w = c.Watch({ service: '' });
    w.on('data', (m) => {
      seen.push(m.status);
      if (seen.length === 1) process.kill(SERVER_PID, 'SIGTERM');
    });
    w.on('error', (e) => resolve(`error ${e.code}: ${e.message}`));
    w.on('end', () => resolve('end'));
  });
  const how = await Promise.race([ended, new Promise((r) => setTimeout(() => r('timeout'), 20000))]);
  expectEq('health: Watch sends SERVING, then NOT_SERVING once the server shuts down', ['SERVING', 'NOT_SERVING'], seen);
  expectEq('health: then the Watch ends with OK', 'end', how);
  expectEq('health: Watch of an unknown service says SERVICE_UNKNOWN', 'SERVICE_UNKNOWN', unknown[0]);
  uw.cancel();
  c.close();
}

main()
  .catch((e) => fail('health: ran', e && e.stack))
  .finally(() => process.exit(summary('health.js')));
