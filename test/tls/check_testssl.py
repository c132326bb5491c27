#!/usr/bin/env python3
"""Judge a testssl.sh --jsonfile (flat JSON) run against runjob's TLS policy.

Usage: check_testssl.py FILE.json
Prints one line per check, "ok NAME" or "fail NAME<TAB>WHY", for test/tls/run.sh to turn
into PASS:/FAIL: lines. Exit status 0 always (the lines carry the verdict), 2 if the file
cannot be read.

What counts:
  * the scan ran to the end: a scanTime entry that is not "Scan interrupted", no
    scanProblem, and no FATAL finding anywhere;
  * protocols: SSLv2, SSLv3, TLS1, TLS1_1 and TLS1_2 reported "not offered", TLS1_3
    "offered". These are asserted by value: testssl rates an offered TLS 1.2 as OK, so a
    severity filter alone would let it through;
  * ciphers (-E): exactly TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256 and
    TLS_CHACHA20_POLY1305_SHA256, all under TLS 1.3, and no cipher line for any other
    protocol;
  * vulnerabilities (-U): each of the core checks below is present (so that a skipped
    check cannot pass) and rated OK or INFO;
  * any finding anywhere rated LOW, MEDIUM, HIGH or CRITICAL fails (testssl's own rating
    for deprecated protocols, weak ciphers and vulnerabilities). WARN findings (testssl
    could not run a check) fail too, except the ones listed in BENIGN_WARN.
"""
import json
import sys

WANT_CIPHERS = {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}
NOT_OFFERED = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"]
# The -U checks that testssl 3.0 reports for every TLS server, HTTP or not.
VULN_IDS = [
    "heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
    "CRIME_TLS", "POODLE_SSL", "fallback_SCSV", "FREAK", "DROWN", "LOGJAM", "BEAST",
    "LUCKY13", "RC4",
]
BAD = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
# WARN findings that say nothing about the server's TLS (none known so far).
BENIGN_WARN = set()


def main():
    try:
        with open(sys.argv[1]) as f:
            findings = json.load(f)
    except (OSError, ValueError, IndexError) as e:
        print(f"fail testssl: JSON output readable\t{e}")
        return 2
    if isinstance(findings, dict):  # --jsonfile-pretty layout, just in case
        findings = [f for sc in findings.get("scanResult", []) for v in sc.values() if isinstance(v, list) for f in v]

    by_id = {}
    for f in findings:
        by_id.setdefault(f.get("id", ""), []).append(f)

    def lines(i):
        return by_id.get(i, [])

    def show(fs):
        return "; ".join(f"{f.get('id')}={f.get('severity')}: {f.get('finding')}" for f in fs)[:400]

    # The scan completed.
    st = lines("scanTime")
    problems = lines("scanProblem") + [f for f in findings if f.get("severity") == "FATAL"]
    if st and not any("interrupt" in str(f.get("finding", "")).lower() for f in st) and not problems:
        print("ok testssl: scan completed")
    else:
        print(f"fail testssl: scan completed\t{show(problems + st) or 'no scanTime entry'}")

    # Protocols.
    for p in NOT_OFFERED:
        fs = lines(p)
        if fs and all(str(f.get("finding", "")).startswith("not offered") for f in fs):
            print(f"ok testssl: {p} not offered")
        else:
            print(f"fail testssl: {p} not offered\t{show(fs) or 'not tested'}")
    fs = lines("TLS1_3")
    if fs and all(str(f.get("finding", "")).startswith("offered") for f in fs):
        print("ok testssl: TLS1_3 offered")
    else:
        print(f"fail testssl: TLS1_3 offered\t{show(fs) or 'not tested'}")

    # Ciphers, from the per-protocol list (-E): ids cipher-<proto>_x<hex>, the IANA name last.
    cipher_fs = [f for f in findings if str(f.get("id", "")).startswith("cipher-")]
    other = [f for f in cipher_fs if not f["id"].startswith("cipher-tls1_3_")]
    got = {str(f.get("finding", "")).split()[-1] for f in cipher_fs if f["id"].startswith("cipher-tls1_3_")}
    if not cipher_fs:
        print("fail testssl: TLS 1.3 cipher suites exactly the three allowed\tno cipher lines (did -E run?)")
    elif got == WANT_CIPHERS and not other:
        print("ok testssl: TLS 1.3 cipher suites exactly the three allowed")
    else:
        print(
            "fail testssl: TLS 1.3 cipher suites exactly the three allowed\t"
            f"got {sorted(got)}; extra: {sorted(got - WANT_CIPHERS)}; missing: {sorted(WANT_CIPHERS - got)};"
            f" other protocols: {show(other) or 'none'}"
        )

    # Vulnerabilities.
    for v in VULN_IDS:
        fs = lines(v)
        if fs and all(f.get("severity") in ("OK", "INFO") for f in fs):
            print(f"ok testssl: {v} not vulnerable")
        else:
            print(f"fail testssl: {v} not vulnerable\t{show(fs) or 'not tested'}")

    # Anything else testssl rated as a problem, or could not check.
    bad = [f for f in findings if f.get("severity") in BAD]
    warn = [f for f in findings if f.get("severity") == "WARN" and f.get("id") not in BENIGN_WARN]
    if bad:
        print(f"fail testssl: no finding rated LOW or worse\t{show(bad)}")
    else:
        print("ok testssl: no finding rated LOW or worse")
    if warn:
        print(f"fail testssl: no check failed to run (WARN)\t{show(warn)}")
    else:
        print("ok testssl: no check failed to run (WARN)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
