# Runs inside a grain (see tests/tests/runtimes.rs) under Debian's /usr/bin/python3: serves HTTP
# on 127.0.0.1:$PORT with the standard library and fetches from itself, writes /var/python.txt
# and reads it back, runs a child python3, then prints one RESULT line with what each step got.
import http.server
import os
import subprocess
import sys
import threading
import urllib.request

nonce = os.environ["NONCE"]
port = int(os.environ["PORT"])


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello {nonce}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hello)
threading.Thread(target=server.serve_forever, daemon=True).start()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as r:
    assert r.status == 200, r.status
    got = r.read().decode()
server.shutdown()

with open("/var/python.txt", "w") as f:
    f.write(nonce)
with open("/var/python.txt") as f:
    back = f.read()

child = subprocess.run(
    [sys.executable, "-c", "import os; print('child', os.environ['NONCE'][::-1])"],
    capture_output=True, text=True, check=True,
).stdout.strip()

print(f"RESULT http={got} var={back} child={child}", flush=True)
