"""Compatibility workload for the seccomp profiles: the parts of Python an
agent's scripts use (stdlib only). Prints one JSON line and exits 0 only if
every check passed."""
import hashlib, json, os, shutil, socket, subprocess, sys, tempfile, threading, time
import concurrent.futures, http.server, urllib.request, zlib

results = {}

def check(name):
    def wrap(fn):
        try:
            fn()
            results[name] = "ok"
        except Exception as e:  # noqa: BLE001 - report every failure
            results[name] = "FAIL: %r" % (e,)
    return wrap

work = tempfile.mkdtemp(prefix="compat-py-")

@check("fs")
def _():
    p = os.path.join(work, "a.json")
    with open(p, "w") as f:
        json.dump({"a": [1, 2, 3]}, f)
    os.makedirs(os.path.join(work, "x", "y"))
    shutil.copy(p, os.path.join(work, "x", "y", "b.json"))
    assert sorted(os.listdir(work)) == ["a.json", "x"]
    os.stat(p); os.rename(p, p + ".bak"); os.remove(p + ".bak")

@check("subprocess")
def _():
    out = subprocess.run([sys.executable, "-c", "print(6*7)"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "42", out

@check("threads")
def _():
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        assert sum(ex.map(lambda n: n * n, range(10))) == 285

@check("http")
def _():
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"pong")
        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    body = urllib.request.urlopen("http://127.0.0.1:%d/" % srv.server_port, timeout=5).read()
    srv.shutdown()
    assert body == b"pong", body

@check("socketpair")
def _():
    a, b = socket.socketpair(); a.sendall(b"x"); assert b.recv(1) == b"x"

@check("crypto")
def _():
    assert hashlib.sha256(b"abc").hexdigest().startswith("ba7816bf")
    assert zlib.decompress(zlib.compress(b"z" * 1000)) == b"z" * 1000

@check("time")
def _():
    t0 = time.monotonic(); time.sleep(0.01); assert time.monotonic() > t0

shutil.rmtree(work)
print(json.dumps(results))
sys.exit(0 if all(v == "ok" for v in results.values()) else 1)
