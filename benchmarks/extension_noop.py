"""A lean external extension for the extensions benchmark: registers for INVOKE and returns to
`next` at once, on one keep-alive connection (stdlib only), so that what is measured is the
platform's cost of an extension, not the extension's."""

import http.client
import os
import sys


def main() -> None:
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.request(
        "POST",
        "/2020-01-01/extension/register",
        body=b'{"events":["INVOKE"]}',
        headers={"Lambda-Extension-Name": os.path.basename(sys.argv[0])},
    )
    resp = conn.getresponse()
    resp.read()
    ext_id = resp.getheader("Lambda-Extension-Identifier") or ""
    headers = {"Lambda-Extension-Identifier": ext_id}
    while True:
        conn.request("GET", "/2020-01-01/extension/event/next", headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            return


if __name__ == "__main__":
    main()
