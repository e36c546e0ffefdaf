# A tiny HTTP app for the gateway tests, run inside a grain by Debian's python3: it echoes
# each request (method, path, headers, body size) as JSON, sets a cookie on /cookie, and
# counts visits in /var/visits.
import http.server
import json
import os


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        visits = 0
        try:
            with open("/var/visits") as f:
                visits = int(f.read() or 0)
        except FileNotFoundError:
            pass
        with open("/var/visits", "w") as f:
            f.write(str(visits + 1))
        out = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body),
            "visits": visits + 1,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if self.path == "/cookie":
            self.send_header("Set-Cookie", "flavour=oat; Path=/; Domain=localhost")
            self.send_header("Set-Cookie", "granary_grain=stolen; Path=/")
            self.send_header("Content-Security-Policy", "default-src *")
            self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def do_PROPFIND(self):
        self.answer()

    def log_message(self, fmt, *args):
        print("request:", fmt % args, flush=True)


print("echo app starting", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", 8000), Echo).serve_forever()
