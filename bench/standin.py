"""A minimal Braze stand-in for throughput figures: reads the call, waits, answers 201.

The sandbox (local/braze_sandbox/) models Braze — validation, profiles, rate limits — and its
work would be measured along with the sender's. This one only keeps the latency, so the figure
is the sender's own. Run in its own process: `python -m bench.standin --latency 0.05`.
"""

from __future__ import annotations

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ANSWER = b'{"message":"success"}'


def serve(port: int, latency_seconds: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm on, the second waits for
        # the client's delayed ACK (~40 ms) and the stand-in would be slower than it claims.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(latency_seconds)
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(_ANSWER)))
            self.end_headers()
            self.wfile.write(_ANSWER)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"stand-in listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer")
    arguments = parser.parse_args()
    serve(arguments.port, arguments.latency)
