#!/usr/bin/env bash
# Contexts: `runjob context add|use|list|rm|show` against a real server, a context used with no
# other flag from another directory, the precedence flags > environment > context > defaults,
# -H HOST:PORT, and the client's refusal of its own certificate outside its validity dates.
# HOME and XDG_CONFIG_HOME point into the test's temporary directory: the real ~/.config is
# never read or written.
source "$(dirname "$0")/../lib.sh"
rj_setup
rj_server_start

export HOME=$RJ_TMP/home XDG_CONFIG_HOME=$RJ_TMP/home/.config
mkdir -p "$HOME"
unset RUNJOB_SERVER_HOST RUNJOB_SERVER_PORT RUNJOB_USER RUNJOB_CA_CERT_PATH \
    RUNJOB_CLIENT_CERT_PATH RUNJOB_CLIENT_KEY_PATH RUNJOB_CONTEXT
FILE=$XDG_CONFIG_HOME/runjob/contexts

# -- add, with relative paths made absolute ---------------------------------------------------
out=$(cd "$RJ_TMP" && "$RUNJOB" context add test -H "127.0.0.1:$RJ_PORT" --certs-dir certs \
    -u alice 2>&1)
rc=$?
expect_eq "context add exits 0" 0 "$rc"
expect_match "context add says how to use it" "context 'test' added .*context use test" "$out"
check "the contexts file is 0600" test "$(stat -c %a "$FILE")" = 600
check "its directory is 0700" test "$(stat -c %a "$(dirname "$FILE")")" = 700
check "paths are stored absolute" grep -qx "client-cert-path = $RJ_CERTS/alice-cert.pem" "$FILE"
check "certs-dir is stored absolute" grep -qx "certs-dir = $RJ_CERTS" "$FILE"
check "host and port are split" grep -qx "server-port = $RJ_PORT" "$FILE"

err=$("$RUNJOB" context add other --certs-dir "$RJ_CERTS" -u nobody 2>&1)
rc=$?
expect_eq "a missing certificate is a usage error" 2 "$rc"
expect_match "the missing file is named" "client certificate '$RJ_CERTS/nobody-cert.pem': No such file" "$err"
err=$("$RUNJOB" context add test --certs-dir "$RJ_CERTS" -u alice 2>&1)
expect_match "an existing name needs --force" "context 'test' exists already \(--force" "$err"
err=$("$RUNJOB" context add 'bad name' 2>&1)
expect_match "a bad name is refused" "'bad name' is not a context name" "$err"
err=$("$RUNJOB" context add x -H "127.0.0.1:1" -P 2 --certs-dir "$RJ_CERTS" -u alice 2>&1)
expect_match "add: ports that differ are refused" "gives port 1 but --server-port 2" "$err"

# -- use, and a command with no connection flag, from another directory -----------------------
err=$("$RUNJOB" context use nope 2>&1)
rc=$?
expect_eq "use of an unknown context fails" 2 "$rc"
expect_match "use of an unknown context lists the known ones" "no context 'nope'.*there are: test" "$err"
check "context use" "$RUNJOB" context use test
out=$(cd / && "$RUNJOB" ping 2>&1)
expect_match "ping from / with the current context" "authenticated as alice" "$out"
out=$(cd / && "$RUNJOB" run /bin/echo hello 2>&1)
expect_eq "run from / with the current context" "hello" "$out"

# -- precedence: flags, then the environment, then the context ---------------------------------
out=$(cd / && RUNJOB_USER=bob "$RUNJOB" ping 2>&1)
expect_match "RUNJOB_USER beats the context (files from its certs-dir)" "authenticated as bob" "$out"
out=$(cd / && RUNJOB_USER=bob "$RUNJOB" ping -u administrator 2>&1)
expect_match "-u beats RUNJOB_USER" "authenticated as administrator" "$out"
free=$(rj_free_port)
err=$(cd / && RUNJOB_SERVER_PORT=$free "$RUNJOB" ping 2>&1)
rc=$?
expect_eq "RUNJOB_SERVER_PORT beats the context's port" 255 "$rc"
expect_match "... and is the port dialled" "127.0.0.1:$free: connection refused" "$err"
out=$(cd / && RUNJOB_SERVER_PORT=$free "$RUNJOB" ping -P "$RJ_PORT" 2>&1)
expect_match "-P beats RUNJOB_SERVER_PORT" "authenticated as alice" "$out"
out=$(cd / && RUNJOB_SERVER_HOST=127.0.0.1:$free "$RUNJOB" ping -H "127.0.0.1:$RJ_PORT" 2>&1)
expect_match "-H HOST:PORT beats RUNJOB_SERVER_HOST=HOST:PORT" "authenticated as alice" "$out"

# A second context that points elsewhere: --context beats RUNJOB_CONTEXT beats the current one.
check "context add elsewhere" "$RUNJOB" context add elsewhere -H "127.0.0.1:$free" \
    --certs-dir "$RJ_CERTS" -u bob
err=$(cd / && "$RUNJOB" ping --context elsewhere 2>&1)
expect_match "--context picks a context" "127.0.0.1:$free: connection refused" "$err"
err=$(cd / && RUNJOB_CONTEXT=elsewhere "$RUNJOB" ping 2>&1)
expect_match "RUNJOB_CONTEXT beats the current context" "127.0.0.1:$free: connection refused" "$err"
out=$(cd / && RUNJOB_CONTEXT=elsewhere "$RUNJOB" ping --context test 2>&1)
expect_match "--context beats RUNJOB_CONTEXT" "authenticated as alice" "$out"
out=$(cd / && "$RUNJOB" ping --context elsewhere -P "$RJ_PORT" 2>&1)
expect_match "a flag beats the named context, setting by setting" "authenticated as bob" "$out"
err=$(cd / && "$RUNJOB" list --context nope 2>&1)
rc=$?
expect_eq "an unknown --context is a usage error" 2 "$rc"
expect_match "... that lists the known ones" "no context 'nope' \(--context\); there are: elsewhere, test" "$err"

# -- list and show --------------------------------------------------------------------------
out=$("$RUNJOB" context list)
expect_match "list marks the current one" "^\*  +test +127\.0\.0\.1:$RJ_PORT +$RJ_CERTS/alice-cert\.pem" "$(grep test <<<"$out")"
expect_match "list shows the other" "^- +elsewhere +127\.0\.0\.1:$free" "$(grep elsewhere <<<"$out")"
expect_eq "list -q: the names" "elsewhere test" "$(echo $("$RUNJOB" context list -q))"
json=$("$RUNJOB" context list -o json)
check "list -o json" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["current"]=="test"; c={x["name"]:x for x in d["contexts"]}; assert c["test"]["current"] and not c["elsewhere"]["current"]; assert c["test"]["server_port"]=='"$RJ_PORT"'; assert c["test"]["client_key_path"]==sys.argv[2]' "$json" "$RJ_CERTS/alice-key.pem"
out=$("$RUNJOB" context show)
expect_match "show: the context in use" "^name: +test \(current\)" "$out"
expect_match "show: the CA path" "ca-cert-path: +$RJ_CERTS/root-ca-cert.pem" "$out"
out=$(RUNJOB_CONTEXT=elsewhere "$RUNJOB" context show)
expect_match "show follows RUNJOB_CONTEXT" "^name: +elsewhere$" "$out"
out=$("$RUNJOB" context show elsewhere -o json)
check "show NAME -o json" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["name"]=="elsewhere" and d["server_host"]=="127.0.0.1"' "$out"

# -- completion: context names from `context list -q` -----------------------------------------
# complete WORDS...: what the bash completion offers for the last word.
complete() {
    bash -c 'source <("$0" completion bash); COMP_WORDS=("$0" "$@"); COMP_CWORD=$#; _runjob
        echo "${COMPREPLY[*]}"' "$RUNJOB" "$@"
}
expect_eq "completion: context use NAME" "elsewhere test" "$(complete context use '')"
expect_eq "completion: --context NAME" "test" "$(complete ping --context t)"
expect_eq "completion: context's commands" "rm" "$(complete context r)"
ids=$(cd / && "$RUNJOB" list -q)
check "the current context lists alice's jobs" test -n "$ids"
expect_eq "completion: job ids from the --context on the line" "$(echo $ids)" \
    "$(RUNJOB_CONTEXT=elsewhere complete status --context test '')"

# -- rm ---------------------------------------------------------------------------------------
out=$("$RUNJOB" context rm elsewhere)
expect_eq "rm of another context" "context 'elsewhere' removed" "$out"
out=$("$RUNJOB" context rm test)
expect_match "rm of the current one says none is current" "was the current one" "$out"
check "no current line is left" bash -c "! grep -q '^current' '$FILE'"
err=$("$RUNJOB" context rm test 2>&1)
expect_match "rm of an unknown name fails" "no context 'test'.*there are none yet" "$err"
err=$(cd / && "$RUNJOB" ping -P "$RJ_PORT" 2>&1)
expect_match "without a context, the defaults again" "cannot read CA certificate 'certs/root-ca-cert.pem'" "$err"

# -- -H HOST:PORT and its conflicts without any context ------------------------------------------
out=$(rj ping -H "127.0.0.1:$RJ_PORT" 2>&1)
expect_match "-H 127.0.0.1:PORT (with the same -P)" "authenticated as alice" "$out"
err=$("$RUNJOB" ping -H "127.0.0.1:$RJ_PORT" -P "$free" 2>&1)
rc=$?
expect_eq "-H and -P ports that differ: exit 2" 2 "$rc"
expect_match "... one line" "^runjob: ping: --server-host gives port $RJ_PORT but --server-port $free" "$err"

# -- the client certificate's dates ----------------------------------------------------------
# Certificates signed by the test CA with dates in the past and in the future (openssl ca is
# the tool that takes explicit start and end dates).
CA=$RJ_TMP/ca
mkdir -p "$CA"
touch "$CA/index.txt"
echo 01 >"$CA/serial"
cat >"$CA/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $CA/index.txt
new_certs_dir = $CA
serial = $CA/serial
default_md = sha384
policy = p
unique_subject = no
[p]
commonName = supplied
EOF
# sign NAME START END: $CA/NAME-cert.pem and $CA/NAME-key.pem, CN alice.
sign() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout "$CA/$1-key.pem" \
        -subj /CN=alice -out "$CA/$1.csr" 2>/dev/null &&
        openssl ca -batch -config "$CA/ca.cnf" -cert "$RJ_CERTS/root-ca-cert.pem" \
            -keyfile "$RJ_CERTS/root-ca-key.pem" -startdate "$2" -enddate "$3" -in "$CA/$1.csr" \
            -out "$CA/$1-cert.pem" -notext >/dev/null 2>&1
}
if ! command -v openssl >/dev/null; then
    echo "SKIP: certificate dates -- the openssl command is not installed"
else
    check "openssl signs an expired certificate" sign old 20200101000000Z 20201102000000Z
    check "openssl signs a future certificate" sign new 20990101000000Z 20991231000000Z
    cp "$RJ_CERTS/root-ca-cert.pem" "$CA/"
    err=$("$RUNJOB" context add old -H "127.0.0.1:$RJ_PORT" --certs-dir "$CA" -u old --use 2>&1 >/dev/null)
    rc=$?
    expect_eq "a context with the expired certificate is added" 0 "$rc"
    expect_match "... with a warning" "^runjob: context add: warning: client certificate $CA/old-cert.pem expired on 2020-11-02" "$err"
    err=$(cd / && "$RUNJOB" ping 2>&1)
    rc=$?
    expect_eq "an expired client certificate: exit 255" 255 "$rc"
    expect_eq "an expired client certificate: one line, before dialing" \
        "runjob: ping: client certificate $CA/old-cert.pem expired on 2020-11-02; make a new one with \`runjob certs --clients-only\`" "$err"
    err=$(rj ping --client-cert-path "$CA/new-cert.pem" --client-key-path "$CA/new-key.pem" 2>&1)
    rc=$?
    expect_eq "a client certificate not valid yet: exit 255" 255 "$rc"
    expect_match "a client certificate not valid yet: said so" \
        "^runjob: ping: client certificate $CA/new-cert.pem is not valid until 2099-01-01" "$err"
    check "the server never heard of them" bash -c "! grep -q 'old-cert\|CN=alice.*expired' '$RJ_SERVER_LOG'"
fi

# -- a damaged contexts file ------------------------------------------------------------------
# It stops only the commands that need a context; context use/add/rm --force rewrite it.
printf '%s\n' 'garbage line' '[good]' 'server-host = 127.0.0.1' "server-port = $RJ_PORT" \
    "ca-cert-path = $RJ_CERTS/root-ca-cert.pem" "client-cert-path = $RJ_CERTS/alice-cert.pem" \
    "client-key-path = $RJ_CERTS/alice-key.pem" >"$FILE"
err=$(cd "$RJ_TMP" && "$RUNJOB" ping -H 127.0.0.1 -P "$RJ_PORT" -u alice 2>&1 >/dev/null)
rc=$?
expect_eq "a damaged contexts file: a command with its server given goes on" 0 "$rc"
expect_match "... warned, with the file and line" "warning: $FILE:1: expected KEY = VALUE" "$err"
err=$(cd / && "$RUNJOB" ping 2>&1)
rc=$?
expect_eq "a damaged contexts file: a command that needs a context fails (2)" 2 "$rc"
expect_match "... naming the line and the way out" "$FILE:1: .*--force" "$err"
err=$("$RUNJOB" context use good --force 2>&1 >/dev/null)
rc=$?
expect_eq "context use --force rewrites a damaged file" 0 "$rc"
expect_match "... saying which line it dropped" "$FILE:1: expected KEY = VALUE or \[NAME\]: dropped" "$err"
expect_eq "... keeping the good contexts" 0 "$(cd / && "$RUNJOB" ping >/dev/null 2>&1; echo $?)"
chmod 775 "$(dirname "$FILE")"
err=$("$RUNJOB" context list 2>&1 >/dev/null)
expect_match "a contexts directory others may write to is warned of" "warning: .* is writable by others" "$err"
chmod 700 "$(dirname "$FILE")"

t_done
