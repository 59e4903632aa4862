#!/usr/bin/env python3
"""A federation peer as servers were before federation media, and one that
hands its files out by location: enough of a server for another server to
fetch media from it, over TLS on 127.0.0.1.

    python3 older_media_peer.py <certificate> <key>

Prints the port it listens on, then serves until killed:

- `old`: `/_matrix/federation/v1/media/{download,thumbnail}/old` are
  unknown (404 M_UNRECOGNIZED); the client API's unauthenticated
  `/_matrix/media/v3/download/<server>/old` and `/thumbnail/...` serve it.
- `moved`: the federation download answers with a `Location` part that
  points to `/files/moved` on this peer.
- `inside`: the federation download names a location on a private
  address (10.1.2.3), which a server must not be led to.
- `gone`: unknown everywhere (404 M_NOT_FOUND).

Every request line is logged to stderr.
"""

import http.server
import json
import ssl
import sys

OLD = b"bytes from a server that predates federation media"
OLD_THUMBNAIL = b"a thumbnail from the unauthenticated route"
MOVED = b"bytes handed out by location"
BOUNDARY = "peerboundary"


class Peer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        sys.stderr.write("peer: " + (format % args) + "\n")

    def answer(self, status, content_type, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, errcode):
        body = json.dumps({"errcode": errcode, "error": "not here"}).encode()
        self.answer(status, "application/json", body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        own = f"127.0.0.1:{self.server.server_address[1]}"
        if path in ("/_matrix/federation/v1/media/download/old",
                    "/_matrix/federation/v1/media/thumbnail/old"):
            self.error(404, "M_UNRECOGNIZED")
        elif path == f"/_matrix/media/v3/download/{own}/old":
            self.answer(200, "text/plain", OLD,
                        [("Content-Disposition", 'attachment; filename="old.txt"')])
        elif path == f"/_matrix/media/v3/thumbnail/{own}/old":
            self.answer(200, "image/png", OLD_THUMBNAIL)
        elif path in ("/_matrix/federation/v1/media/download/moved",
                      "/_matrix/federation/v1/media/download/inside"):
            location = (f"https://{own}/files/moved" if path.endswith("moved")
                        else "https://10.1.2.3/files/moved")
            body = (f"--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
                    f"--{BOUNDARY}\r\nLocation: {location}\r\n\r\n\r\n"
                    f"--{BOUNDARY}--\r\n").encode()
            self.answer(200, f"multipart/mixed; boundary={BOUNDARY}", body)
        elif path == "/files/moved":
            self.answer(200, "text/plain", MOVED)
        else:
            self.error(404, "M_NOT_FOUND")


def main():
    certificate, key = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Peer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
