#!/usr/bin/env python3
"""Peak memory of chatload and of `chatload serve` under each hostile input of issue 14.

Each case runs the binary as a user would, against a file or a peer made to misbehave, and
prints what chatload said, its exit code and its peak resident memory (the child's
ru_maxrss, or serve's VmHWM). Loopback only; every case stops by itself within seconds.

    benches/hostile.py [path/to/chatload]      # default: target/release, else target/debug
"""

import base64
import http.server
import os
import resource
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary():
    if len(sys.argv) > 1:
        return sys.argv[1]
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "chatload")
        if os.path.exists(p):
            return p
    sys.exit("no chatload binary: cargo build --release first")


BIN = binary()
TMP = tempfile.mkdtemp(prefix="chatload-hostile-")
ROWS = []


def run(case, args, timeout=60, stdin=None):
    """Runs chatload with `args`; returns (exit code, first line said, peak RSS MiB, seconds)."""
    t0 = time.monotonic()
    # Through GNU time: a child forked straight from this Python would start with its
    # resident size counted in ru_maxrss.
    p = subprocess.Popen(
        ["/usr/bin/time", "-f", "PEAK_KIB=%M", BIN] + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
    )
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    out = p.stdout.read()
    p.wait()
    timer.cancel()
    took = time.monotonic() - t0
    text = out.decode("utf-8", "replace")
    peak = next((int(l[9:]) for l in text.splitlines() if l.startswith("PEAK_KIB=")), 0)
    lines = [l for l in text.splitlines() if l and not l.startswith("PEAK_KIB=")
             and not l.startswith("Command exited") and not l.startswith("Command terminated")]
    said = next((l for l in lines if l.startswith("chatload")), lines[-1] if lines else "")
    code = p.returncode
    row = (case, code, peak / 1024, took, said[:150])
    ROWS.append(row)
    print(f"{case}\n  exit {code}, peak RSS {row[2]:.1f} MiB, {took:.1f} s: {row[4]}", flush=True)
    return row


def scenario(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


CHAT = """[scenario]
name = "hostile"
seed = 1
[population.consumers]
users = {users}
{extra}
[[pattern]]
kind = "direct_chat"
conversations = "6/min per user"
[load]
stages = [{{ ramp = "1s" }}, {{ hold = "2s" }}]
"""


def client_cases():
    run(
        "validate: groups = 9223372036854775807",
        ["validate", scenario("g-max.toml", CHAT.format(users=1000, extra="groups = 9223372036854775807"))],
    )
    run(
        "run: groups = 100_000_000 with 1,000 users",
        ["run", scenario("g-1e8.toml", CHAT.format(users=1000, extra="groups = 100_000_000")),
         "--out", os.path.join(TMP, "g-1e8")],
    )
    run(
        "validate: users = 100,000,000 with 100-300 contacts",
        ["validate", scenario("u-1e8.toml", CHAT.format(
            users="100_000_000", extra="contacts = { uniform = { min = 100, max = 300 } }"))],
    )
    run("validate /dev/zero", ["validate", "/dev/zero"], timeout=20)
    fifo = os.path.join(TMP, "fifo.toml")
    os.mkfifo(fifo)
    run("validate a FIFO (nobody writes to it)", ["validate", fifo], timeout=20)
    big = os.path.join(TMP, "big.toml")
    with open(big, "w") as f:
        f.write("# ")
        for _ in range(64):
            f.write("x" * (1 << 20))
        f.write("\n")
    run("validate a 64 MiB scenario file", ["validate", big], timeout=20)


class Flood(http.server.BaseHTTPRequestHandler):
    """Answers every request 200 with a declared gigabyte, trickled until the client leaves."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        try:
            for _ in range(1 << 14):
                self.wfile.write(b"x" * 65536)
        except OSError:
            pass

    do_GET = do_POST

    def log_message(self, *args):
        pass


def http_flood_case():
    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    srv = Server(("127.0.0.1", 0), Flood)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    with open(os.path.join(ROOT, "tests", "data", "flood-open.toml")) as f:
        text = f.read()
    run(
        "run: an HTTP API answering 1 GiB to every request (50 users)",
        ["run", scenario("flood.toml", text), "--target", f"http://127.0.0.1:{port}", "-q",
         "--out", os.path.join(TMP, "flood")],
        timeout=60,
    )
    srv.shutdown()


def serve_each(listener, serve_one, held):
    """Serves every connection `listener` accepts with `serve_one`, each on a thread of its
    own; returns what closes the listener and the connections kept in `held`."""
    def accept_loop():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(c,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()

    def close():
        listener.close()
        for c in held:
            c.close()

    return close


def fake_ws_target(after_login):
    """A WebSocket target on a free loopback port that takes each log-in, answers hello_ok and
    then calls `after_login(connection)`; returns (port, close)."""
    import hashlib
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    held = []

    def serve_one(c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            got = c.recv(4096)
            if not got:
                return
            buf += got
        key = next(l.split(b":", 1)[1].strip() for l in buf.split(b"\r\n")
                   if l.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(
            key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        rest = buf.split(b"\r\n\r\n", 1)[1]
        while len(rest) < 2 or len(rest) < 6 + (rest[1] & 0x7F):
            rest += c.recv(4096)
        n = rest[1] & 0x7F
        mask, data = rest[2:6], rest[6:6 + n]
        hello = bytes(b ^ mask[i % 4] for i, b in enumerate(data)).decode()
        user = int(hello.split('"user":')[1].split(",")[0])
        ok = ('{"op":"hello_ok","user":%d,"last_seq":0}' % user).encode()
        c.sendall(bytes([0x81, len(ok)]) + ok)
        held.append(c)
        try:
            after_login(c)
        except OSError:
            pass

    return port, serve_each(listener, serve_one, held)


def deaf_target_case():
    """A WebSocket target that takes the log-in, answers hello_ok and never reads again."""
    port, close = fake_ws_target(lambda c: None)
    text = """[scenario]
name = "deaf-target"
seed = 5
loss_deadline = "1s"
drain = "1s"

[population.consumers]
users = 50
contacts = { uniform = { min = 1, max = 3 } }

[[pattern]]
kind = "direct_chat"
conversations = "1200/min per user"
messages = 1
size = 65536
typing = 0
read = 0
media = { text = 1 }

[load]
stages = [{ ramp = "1s" }, { hold = "15s" }]
"""
    run(
        "run: a WebSocket target that stops reading after the log-in (50 users, 1.3 MB/s each)",
        ["run", scenario("deaf.toml", text), "--target", f"ws://127.0.0.1:{port}/v1/ws", "-q",
         "--out", os.path.join(TMP, "deaf")],
        timeout=90,
    )
    close()


def long_frame_case(declared):
    """A WebSocket target that, after the log-in, starts one text frame of `declared` bytes to
    every user, sends all of it but the last byte, and never finishes it."""
    def start_frame(c):
        c.sendall(bytes([0x81, 127]) + struct.pack(">Q", declared))
        chunk = b"x" * (1 << 16)
        left = declared - 1
        while left > 0:
            n = min(left, len(chunk))
            c.sendall(chunk[:n])
            left -= n

    port, close = fake_ws_target(start_frame)
    text = """[scenario]
name = "long-frames"
seed = 6
loss_deadline = "1s"
drain = "1s"

[population.consumers]
users = 200
contacts = { uniform = { min = 1, max = 3 } }

[[pattern]]
kind = "direct_chat"
conversations = "6/min per user"

[load]
stages = [{ ramp = "1s" }, { hold = "8s" }]
"""
    run(
        f"run: a WebSocket target that starts a frame of {declared:,} bytes to each of 200 users"
        " and never finishes it",
        ["run", scenario(f"long-{declared}.toml", text), "--target", f"ws://127.0.0.1:{port}/v1/ws",
         "-q", "--out", os.path.join(TMP, f"long-{declared}")],
        timeout=90,
    )
    close()


def fake_mqtt_broker(after_login):
    """An MQTT 3.1.1 broker on a free loopback port that accepts each CONNECT and SUBSCRIBE
    and then calls `after_login(connection)`; returns (port, close)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    port = listener.getsockname()[1]
    held = []

    def packet(c, buf):
        while True:
            if len(buf) >= 2:
                length, shift, at = 0, 0, 1
                while at < len(buf):
                    length |= (buf[at] & 0x7F) << shift
                    shift += 7
                    at += 1
                    if buf[at - 1] & 0x80 == 0:
                        if len(buf) >= at + length:
                            return buf[:at + length], buf[at + length:], at
                        break
            got = c.recv(4096)
            if not got:
                raise OSError("closed")
            buf += got

    def serve_one(c):
        try:
            _, rest, _ = packet(c, b"")
            c.sendall(bytes([0x20, 2, 0, 0]))
            subscribe, rest, header = packet(c, rest)
            c.sendall(bytes([0x90, 3]) + subscribe[header:header + 2] + bytes([1]))
            held.append(c)
            after_login(c)
        except OSError:
            pass

    return port, serve_each(listener, serve_one, held)


def long_publish_case(declared):
    """An MQTT broker that, after the subscription, starts one PUBLISH of `declared` bytes
    (fixed header included) to every user, sends all of it but the last byte, and never
    finishes it."""
    def start_publish(c):
        remaining = declared - 1 - 4
        length = bytes([(remaining >> (7 * i)) & 0x7F | (0x80 if i < 3 else 0) for i in range(4)])
        body = struct.pack(">H", 3) + b"u/1" + b"x" * (remaining - 5)
        c.sendall(bytes([0x30]) + length + body[:-1])

    port, close = fake_mqtt_broker(start_publish)
    text = f"""[scenario]
name = "long-publishes"
seed = 7
loss_deadline = "1s"
drain = "1s"

[population.consumers]
users = 200
contacts = {{ uniform = {{ min = 1, max = 3 }} }}

[[pattern]]
kind = "direct_chat"
conversations = "6/min per user"

[load]
stages = [{{ ramp = "1s" }}, {{ hold = "8s" }}]

[target]
url = "mqtt://127.0.0.1:{port}"

[target.mqtt]
version = "3.1.1"
qos = 1
"""
    run(
        f"run: an MQTT broker that starts a PUBLISH of {declared:,} bytes to each of 200 users"
        " and never finishes it",
        ["run", scenario(f"mqtt-long-{declared}.toml", text), "-q",
         "--out", os.path.join(TMP, f"mqtt-long-{declared}")],
        timeout=90,
    )
    close()


def hostile_hlog(lines):
    """A bundle whose latency.hlog declares histograms up to 2^62 µs with 5 digits."""
    body = bytearray()
    body += struct.pack(">iiiiqqd", 0x1C849313, 2, 0, 5, 1, 1 << 62, 1.0)
    body += bytes([2, 1])  # counts: zig-zag LEB128, one value
    payload = zlib.compress(bytes(body))
    blob = struct.pack(">ii", 0x1C849314, len(payload)) + payload
    b64 = base64.b64encode(blob).decode()
    d = os.path.join(TMP, f"hlog-{lines}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "latency.hlog"), "w") as f:
        f.write("#[StartTime: 1700000000.000 (seconds since epoch)]\n")
        f.write("#[MaxValueDivisor: 1000.0]\n")
        f.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
        for i in range(lines):
            f.write(f"Tag=delivery,{i}.000,1.000,0.001,{b64}\n")
    return d


def hlog_cases():
    # A real bundle to hold the crafted log: run the quickstart briefly on the embedded server.
    good = os.path.join(TMP, "good")
    subprocess.run(
        [BIN, "run", os.path.join(ROOT, "scenarios", "quickstart.toml"), "--duration", "2s", "-q",
         "--out", good],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
    )
    for lines in (10, 4000):
        d = hostile_hlog(lines)
        for name in ("summary.json", "scenario.toml"):
            src = os.path.join(good, name)
            if os.path.exists(src):
                with open(src, "rb") as a, open(os.path.join(d, name), "wb") as b:
                    b.write(a.read())
        size = os.path.getsize(os.path.join(d, "latency.hlog")) // 1024
        run(f"report on a {size} KiB latency.hlog of {lines} lines declared up to 2^62 µs, 5 digits",
            ["report", d], timeout=60)
        run(f"merge of that bundle with a good one ({lines} lines)",
            ["merge", good, d, "--out", os.path.join(TMP, f"merged-{lines}")], timeout=60)


def ws_connect(port, user, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    ws_send(s, '{"op":"hello","user":%d,"last_seq":0,"run":7}' % user)
    return s


def ws_send(s, text):
    data = text.encode()
    mask = os.urandom(4)
    head = bytearray([0x81])
    n = len(data)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += struct.pack(">H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack(">Q", n)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    masked = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")
    s.sendall(bytes(head) + mask + masked)


def drain(s):
    s.setblocking(False)
    try:
        while s.recv(1 << 20):
            pass
    except (BlockingIOError, OSError):
        pass
    s.setblocking(True)


def vmhwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve_case(case, body):
    port = free_port()
    p = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    t0 = time.monotonic()
    detail = body(port)
    peak = vmhwm(p.pid)
    p.send_signal(2)
    out = p.communicate(timeout=20)[0].decode("utf-8", "replace")
    bounds = next((l.strip() for l in out.splitlines() if "bounds:" in l), "")
    ROWS.append((case, p.returncode, peak, time.monotonic() - t0, detail))
    print(f"{case}\n  serve peak RSS {peak:.1f} MiB: {detail}\n  serve said: {bounds}", flush=True)


def big_group(port):
    s = ws_connect(port, 1)
    members = ",".join(str(i) for i in range(300_000))
    how = "the sends went in"
    try:
        ws_send(s, '{"op":"group","group":9,"members":[%s]}' % members)
        for i in range(20):
            ws_send(s, '{"op":"send","id":%d,"group":9,"t":1,"s":2,"body":"%s"}' % (i + 1, "x" * 1000))
        time.sleep(1)
    except OSError as e:
        how = f"the connection was closed ({e.__class__.__name__})"
    s.settimeout(2)
    try:
        said = s.recv(4096)
        close = said.find(b"\x88")
        if close >= 0:
            how = f"closed: {said[close + 4:close + 2 + said[close + 1]].decode('utf-8', 'replace')}"
    except OSError:
        pass
    s.close()
    return f"one 300,000-member group definition (2.0 MB), then 20 sends of 1 KB to it: {how}"


def offline_sends(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.close()
    s = ws_connect(port, 1)
    for i in range(100_000):
        ws_send(s, '{"op":"send","id":%d,"to":%d,"t":1,"s":2,"body":"%s"}' % (i + 1, 1000 + i % 50_000, "x" * 3000))
        if i % 1000 == 999:
            drain(s)
    time.sleep(1)
    drain(s)
    s.close()
    return "100,000 sends of 3 KB to 50,000 users who never connect"


def never_reads(port):
    """Pings as fast as the socket takes them and never reads a pong."""
    s = ws_connect(port, 1, rcvbuf=4096)
    data = b'{"op":"ping"}'
    mask = os.urandom(4)
    frame = bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    batch = frame * 10_000
    sent = 0
    t0 = time.monotonic()
    try:
        while sent < 5_000_000 and time.monotonic() - t0 < 30:
            s.sendall(batch)
            sent += 10_000
        how = "not cut"
    except OSError as e:
        how = f"cut ({e.__class__.__name__})"
    s.close()
    return f"{sent:,} pings written without reading a pong: {how}"


def half_headers(port):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    refused = 0
    for _ in range(19_000):
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=2)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            held.append(c)
        except OSError:
            refused += 1
    t0 = time.monotonic()
    try:
        h = socket.create_connection(("127.0.0.1", port), timeout=15)
        h.settimeout(15)
        h.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first = h.recv(64).split(b"\r\n")[0].decode()
    except OSError as e:
        first = f"no answer ({e})"
    took = time.monotonic() - t0
    for c in held:
        c.close()
    return f"19,000 connections holding half a header ({refused} could not connect); /healthz beside them: {first!r} in {took:.1f} s"


def main():
    print(f"chatload: {BIN}\n")
    client_cases()
    http_flood_case()
    deaf_target_case()
    long_frame_case(4 << 20)
    long_frame_case((1 << 20) + (16 << 10))
    long_publish_case(4 << 20)
    # chatload's largest packet: its largest body and 4 KiB for the rest.
    long_publish_case((1 << 20) + (4 << 10))
    hlog_cases()
    serve_case("serve: a group of 300,000 members", big_group)
    serve_case("serve: sends to users who never connect", offline_sends)
    serve_case("serve: a client that sends and never reads", never_reads)
    serve_case("serve: connections that never finish their header", half_headers)
    print("\n| case | exit | peak RSS | seconds |\n|---|---|---|---|")
    for case, code, rss, took, _ in ROWS:
        print(f"| {case} | {code} | {rss:.1f} MiB | {took:.1f} |")


if __name__ == "__main__":
    main()
