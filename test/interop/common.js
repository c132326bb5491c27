'use strict';
// What the Node clients of the interop tier share: one "PASS: name" or "FAIL: name -- why"
// line per check (test/run.sh counts them), the checks, and mTLS clients of the server under
// test as `runjob certs` users. test/interop/run.sh sets RJ_PORT (the server's port on
// 127.0.0.1) and RJ_CERTS (the certificates' folder: alice, bob, administrator and the CA).

const fs = require('fs');
const path = require('path');
const tls = require('tls');
const grpc = require('@grpc/grpc-js');

const CERTS = process.env.RJ_CERTS;
const TARGET = `127.0.0.1:${process.env.RJ_PORT}`;

let passed = 0;
let failed = 0;
function ok(name) {
  passed++;
  console.log(`PASS: ${name}`);
}
// why on one line, cut at 600 characters (a server's words may echo a 1 MiB request).
function fail(name, why) {
  failed++;
  console.log(`FAIL: ${name} -- ${String(why).replace(/\s+/g, ' ').slice(0, 600)}`);
}
function expectEq(name, expected, actual) {
  const e = JSON.stringify(expected);
  const a = JSON.stringify(actual);
  if (e === a) ok(name);
  else fail(name, `expected ${e}, got ${a}`);
}
function expectTrue(name, cond, why) {
  if (cond) ok(name);
  else fail(name, why);
}

const codeName = (code) =>
  Object.keys(grpc.status).find((k) => grpc.status[k] === code) || String(code);
const errText = (err) => (err ? `${codeName(err.code)}: ${err.details || err.message}` : 'no error');

// expectCode(name, code, {err, res}): the call failed with that gRPC status code.
function expectCode(name, expectedCode, r) {
  if (r.err && r.err.code === expectedCode) ok(name);
  else if (r.err) fail(name, `expected ${codeName(expectedCode)}, got ${errText(r.err)}`);
  else fail(name, `expected ${codeName(expectedCode)}, the call succeeded: ${JSON.stringify(r.res || null).slice(0, 200)}`);
}

// credentials(user, {dir, tlsOptions}): TLS 1.3 credentials that trust the server's CA (from
// RJ_CERTS) and present USER's certificate from dir (default RJ_CERTS; user null: no client
// certificate at all); tlsOptions override tls.createSecureContext's options.
function credentials(user, { dir = CERTS, tlsOptions = {} } = {}) {
  const read = (p) => fs.readFileSync(p);
  const opts = { ca: read(path.join(CERTS, 'root-ca-cert.pem')), minVersion: 'TLSv1.3', ...tlsOptions };
  if (user !== null) {
    opts.cert = read(path.join(dir, `${user}-cert.pem`));
    opts.key = read(path.join(dir, `${user}-key.pem`));
  }
  return grpc.credentials.createFromSecureContext(tls.createSecureContext(opts));
}

// client(Service, user, {dir, tlsOptions, options}): a client of Service (a constructor from
// grpc.loadPackageDefinition, or grpc.Client) for USER, options added to its channel options.
function client(Service, user, { dir, tlsOptions, options = {} } = {}) {
  return new Service(TARGET, credentials(user, { dir, tlsOptions }), {
    // The server certificate names localhost (and 127.0.0.1); SNI must not be an IP address.
    'grpc.ssl_target_name_override': 'localhost',
    ...options,
  });
}

// summary(script): prints the counts; the exit status (1 when a check failed or none passed).
function summary(script) {
  console.log(`# ${script}: ${passed} passed, ${failed} failed`);
  return failed > 0 || passed === 0 ? 1 : 0;
}

module.exports = {
  CERTS,
  TARGET,
  ok,
  fail,
  expectEq,
  expectTrue,
  expectCode,
  codeName,
  errText,
  credentials,
  client,
  summary,
};
