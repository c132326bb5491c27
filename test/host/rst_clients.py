#!/usr/bin/env python3
"""Clients that vanish: each one does the TLS 1.3 handshake with a client certificate, speaks
just enough HTTP/2 to start a Stream RPC, waits for the first output message, then closes its
socket with SO_LINGER 0, so the server sees a TCP RST (no TLS close_notify, no GOAWAY, no
RST_STREAM). Used by test/host/test_server_load.sh.

    rst_clients.py HOST PORT CA CERT KEY JOB_ID TOTAL BATCH [HOLD]

Runs TOTAL clients, BATCH at a time: a batch connects and starts its streams concurrently,
then all of its clients reset at once. With HOLD (seconds), each client first stays connected
that long as a reader that stopped reading: it never sends a WINDOW_UPDATE, so the server
fills its flow-control window and can send it nothing more, but it answers the server's
keepalive PINGs and acknowledges its SETTINGS, so the server has no reason to drop it (test/host/test_server_streams.sh). Prints "streamed N of TOTAL" (N = clients that got
output before they vanished) and the first few errors; exits 0 when every client streamed.
"""
import socket
import ssl
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY = 0, 1, 4, 6, 7


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman coding (RFC 7541 6.2.2)."""
    n, v = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return buf


class Client(threading.Thread):
    def __init__(self, args, ctx, barrier, hold):
        super().__init__(daemon=True)
        self.args, self.ctx, self.barrier, self.hold = args, ctx, barrier, hold
        self.sock, self.streamed, self.error = None, False, None

    def run(self):
        try:
            self.start_stream()
        except Exception as e:  # reported by the caller
            self.error = repr(e)
        if self.hold > 0:
            # At once, not at the barrier: a client blocked there would not answer the
            # keepalive PINGs, and the server would drop it after ~40 s.
            if self.sock is not None and self.error is None:
                self.stall()
        else:
            try:
                self.barrier.wait(timeout=120)
            except threading.BrokenBarrierError:
                pass
        self.vanish()

    def stall(self):
        deadline = time.monotonic() + self.hold
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
                hdr = recv_exact(self.sock, 9)
                length = struct.unpack(">I", b"\x00" + hdr[:3])[0]
                payload = recv_exact(self.sock, length)
                if hdr[3] == PING and not hdr[4] & 0x1:
                    self.sock.sendall(frame(PING, 0x1, 0, payload))
                elif hdr[3] == SETTINGS and not hdr[4] & 0x1:  # unacked, gRPC hangs up
                    self.sock.sendall(frame(SETTINGS, 0x1, 0))
        except (OSError, ConnectionError):
            return  # timed out (the hold is over) or the server closed

    def start_stream(self):
        host, port, job = self.args["host"], self.args["port"], self.args["job"]
        raw = socket.create_connection((host, port), timeout=60)
        self.sock = self.ctx.wrap_socket(raw, server_hostname=host)
        headers = b"".join(hpack_literal(k, v) for k, v in (
            (":method", "POST"), (":scheme", "https"),
            (":path", "/runjob.v1.JobManager/Stream"),
            (":authority", "%s:%d" % (host, port)),
            ("content-type", "application/grpc"), ("te", "trailers")))
        req = b"\x0a" + bytes([len(job)]) + job.encode()  # StreamRequest.id
        msg = b"\x00" + struct.pack(">I", len(req)) + req   # gRPC length prefix
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, 0x4, 1, headers) +
                          frame(DATA, 0x1, 1, msg))
        while not self.streamed:
            hdr = recv_exact(self.sock, 9)
            length = struct.unpack(">I", b"\x00" + hdr[:3])[0]
            ftype, flags, stream = hdr[3], hdr[4], struct.unpack(">I", hdr[5:])[0] & 0x7fffffff
            payload = recv_exact(self.sock, length)
            if ftype == SETTINGS and not flags & 0x1:
                self.sock.sendall(frame(SETTINGS, 0x1, 0))
            elif ftype == GOAWAY:
                raise ConnectionError("GOAWAY from the server")
            elif ftype == DATA and stream == 1 and length > 0:
                self.streamed = True

    def vanish(self):
        if self.sock is None:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            self.sock.close()  # no unwrap(): no close_notify, just the RST


def main():
    host, port, ca, cert, key, job, total, batch = sys.argv[1:9]
    hold = float(sys.argv[9]) if len(sys.argv) > 9 else 0.0
    args = {"host": host, "port": int(port), "job": job}
    total, batch = int(total), int(batch)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    streamed, errors, done = 0, [], 0
    while done < total:
        n = min(batch, total - done)
        barrier = threading.Barrier(n)
        clients = [Client(args, ctx, barrier, hold) for _ in range(n)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=180 + hold)
        streamed += sum(1 for c in clients if c.streamed)
        errors += [c.error for c in clients if c.error]
        done += n
    print("streamed %d of %d" % (streamed, total))
    for e in errors[:5]:
        print("error: %s" % e)
    return 0 if streamed == total else 1


if __name__ == "__main__":
    sys.exit(main())
