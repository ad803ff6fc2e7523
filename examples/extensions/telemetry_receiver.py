#!/usr/bin/env python3
"""An external extension that subscribes to the Telemetry API and prints each batch it receives.

Copy (or link) it into an extensions directory, or run it as shown in the README:
    rie --extensions-dir examples/extensions/telemetry --task-root examples/hello --handler app.handler
It binds 127.0.0.1 and subscribes with the host name `sandbox.localdomain`, as on Lambda.
"""

import http.client
import http.server
import json
import os
import sys
import threading

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
NAME = os.path.basename(sys.argv[0])


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for event in batch:
            print(f"[{NAME}] {event['type']}: {json.dumps(event['record'])}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def call(method, path, body=None, headers=None):
    host, _, port = API.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers or {})
    resp = conn.getresponse()
    return resp, resp.read()


def main():
    resp, _ = call(
        "POST",
        "/2020-01-01/extension/register",
        {"events": ["SHUTDOWN"]},
        {"Lambda-Extension-Name": NAME},
    )
    ext_id = resp.getheader("Lambda-Extension-Identifier")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    call(
        "PUT",
        "/2022-07-01/telemetry",
        {
            "schemaVersion": "2022-12-13",
            "types": ["platform", "function"],
            "buffering": {"timeoutMs": 25},
            "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{port}/"},
        },
        {"Lambda-Extension-Identifier": ext_id},
    )
    call("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id})


if __name__ == "__main__":
    main()
