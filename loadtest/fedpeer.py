"""A federation load generator: a minimal Matrix server that joins one room
on a target homeserver and then pushes signed PDUs at its `/send` endpoint.

It owns a signing key, serves `/_matrix/key/v2/server` over TLS on its own
loopback port (the target fetches the key from there, as from any server
named `127.0.0.1:<port>`), joins through `make_join`/`send_join` v2 and
builds every message event itself: content hash, signature, event ID
(room versions 4 to 10), each citing the previous one. Transactions go out
one at a time, as a real origin sends them, so PDUs/s is how fast the
target takes in a stream from one busy server.

Needs `signedjson` and `canonicaljson`, which the load-test venv has
(Synapse depends on them).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import ssl
import threading
import time
import urllib.parse

import canonicaljson
import signedjson.key
import signedjson.sign

KEY_ID_VERSION = "lt1"
# Top-level keys a room version 4-10 redaction keeps (the event ID hashes these).
KEPT_KEYS = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts",
    "membership",
}
# Content a room version 10 redaction keeps, per event type: the event IDs of
# the room's state events (the auth events this generator cites) hash it.
KEPT_CONTENT = {
    "m.room.member": {"membership", "join_authorised_via_users_server"},
    "m.room.create": {"creator"},
    "m.room.join_rules": {"join_rule", "allow"},
    "m.room.power_levels": {"ban", "events", "events_default", "kick", "redact", "state_default",
                            "users", "users_default"},
    "m.room.history_visibility": {"history_visibility"},
}


def unpadded_b64(data: bytes, urlsafe: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode().rstrip("=")


def redacted(event: dict) -> dict:
    kept = {key: value for key, value in event.items() if key in KEPT_KEYS}
    content_keys = KEPT_CONTENT.get(event["type"], set())
    kept["content"] = {k: v for k, v in event.get("content", {}).items() if k in content_keys}
    return kept


class FederationPeer:
    """One origin server, `127.0.0.1:<port>`, with one user."""

    def __init__(self, port: int, certificate: str, key: str):
        self.port = port
        self.server_name = f"127.0.0.1:{port}"
        self.user_id = f"@loadgen:{self.server_name}"
        self.signing_key = signedjson.key.generate_signing_key(KEY_ID_VERSION)
        self.key_id = f"ed25519:{KEY_ID_VERSION}"
        self.certificate, self.key = certificate, key
        self.requests_in = 0
        # Every event this server made, by ID, so it can answer /event and
        # /get_missing_events as the origin must.
        self.events: dict[str, dict] = {}
        self._httpd = None

    def missing_events(self, request: dict) -> list[dict]:
        """The chain back from `latest_events`, stopping at `earliest_events`, oldest first."""
        earliest = set(request.get("earliest_events", []))
        limit = min(int(request.get("limit", 10)), 20)
        found: list[dict] = []
        frontier = list(request.get("latest_events", []))
        seen = set(frontier)
        while frontier and len(found) < limit:
            event = self.events.get(frontier.pop(0))
            if event is None:
                continue
            for prev in event["prev_events"]:
                if prev in earliest or prev in seen or prev not in self.events:
                    continue
                seen.add(prev)
                found.append(self.events[prev])
                frontier.append(prev)
        found.sort(key=lambda event: event["depth"])
        return found[-limit:] if found else []

    # ------------------------------------------------------------ signing

    def finish_event(self, event: dict) -> tuple[str, dict]:
        """Adds the content hash and this server's signature; returns (event ID, event)."""
        hashed = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
        digest = hashlib.sha256(canonicaljson.encode_canonical_json(hashed)).digest()
        event["hashes"] = {"sha256": unpadded_b64(digest)}
        signed = signedjson.sign.sign_json(redacted(event), self.server_name, self.signing_key)
        event["signatures"] = signed["signatures"]
        reference = {k: v for k, v in redacted(event).items() if k not in ("signatures", "unsigned")}
        event_id = "$" + unpadded_b64(
            hashlib.sha256(canonicaljson.encode_canonical_json(reference)).digest(), urlsafe=True)
        self.events[event_id] = event
        return event_id, event

    def authorization(self, method: str, uri: str, destination: str, content=None) -> str:
        request = {"method": method, "uri": uri, "origin": self.server_name,
                   "destination": destination}
        if content is not None:
            request["content"] = content
        signed = signedjson.sign.sign_json(request, self.server_name, self.signing_key)
        signature = signed["signatures"][self.server_name][self.key_id]
        return (f'X-Matrix origin="{self.server_name}",destination="{destination}",'
                f'key="{self.key_id}",sig="{signature}"')

    # ------------------------------------------------------------ serving keys

    def key_document(self) -> dict:
        verify_key = signedjson.key.get_verify_key(self.signing_key)
        document = {
            "server_name": self.server_name,
            "valid_until_ts": int(time.time() * 1000) + 24 * 3600 * 1000,
            "verify_keys": {self.key_id: {"key": signedjson.key.encode_verify_key_base64(verify_key)}},
            "old_verify_keys": {},
        }
        return signedjson.sign.sign_json(document, self.server_name, self.signing_key)

    def serve(self) -> None:
        """Serves the key, and takes (and drops) whatever the target sends back."""
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self) -> dict:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    return json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return {}

            def do_GET(self):
                peer.requests_in += 1
                path = urllib.parse.unquote(self.path.split("?")[0])
                if path.startswith("/_matrix/key/v2/server"):
                    self.reply(200, peer.key_document())
                elif path.startswith("/_matrix/federation/v1/event/"):
                    event = peer.events.get(path.rsplit("/", 1)[1])
                    if event is None:
                        self.reply(404, {"errcode": "M_NOT_FOUND", "error": "no such event"})
                    else:
                        self.reply(200, {"origin": peer.server_name, "pdus": [event],
                                         "origin_server_ts": int(time.time() * 1000)})
                else:
                    self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not served here"})

            def do_POST(self):
                peer.requests_in += 1
                request = self.body()
                if self.path.startswith("/_matrix/federation/v1/get_missing_events/"):
                    self.reply(200, {"events": peer.missing_events(request)})
                else:
                    self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not served here"})

            def do_PUT(self):
                peer.requests_in += 1
                self.body()
                if self.path.startswith("/_matrix/federation/v1/send/"):
                    self.reply(200, {"pdus": {}})
                else:
                    self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not served here"})

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def shutdown(self) -> None:
        if self._httpd:
            self._httpd.shutdown()


class Target:
    """Requests from the peer to one target server over one keep-alive TLS connection."""

    def __init__(self, peer: FederationPeer, target_name: str):
        self.peer = peer
        self.name = target_name
        host, port = target_name.rsplit(":", 1)
        self.connection = http.client.HTTPSConnection(
            host, int(port), context=ssl._create_unverified_context(), timeout=300)

    def request(self, method: str, path: str, body=None) -> tuple[int, dict]:
        headers = {"Authorization": self.peer.authorization(method, path, self.name, body)}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"{}")
        except ValueError:
            return response.status, {"raw": raw[:200].decode(errors="replace")}

    def join(self, room_id: str, room_version: str) -> "RoomChain":
        """Joins `room_id` as the peer's user; returns where its messages continue."""
        room = urllib.parse.quote(room_id, safe="")
        user = urllib.parse.quote(self.peer.user_id, safe="")
        status, made = self.request(
            "GET", f"/_matrix/federation/v1/make_join/{room}/{user}?ver={room_version}")
        if status != 200:
            raise RuntimeError(f"make_join: {status} {made}")
        template = made["event"]
        template["origin_server_ts"] = int(time.time() * 1000)
        template["origin"] = self.peer.server_name
        for key in ("signatures", "hashes", "event_id", "unsigned"):
            template.pop(key, None)
        join_id, join = self.peer.finish_event(template)
        status, joined = self.request(
            "PUT", f"/_matrix/federation/v2/send_join/{room}/{urllib.parse.quote(join_id, safe='')}",
            join)
        if status != 200:
            raise RuntimeError(f"send_join: {status} {joined}")
        by_key = {}
        for event in joined["state"]:
            by_key[(event["type"], event.get("state_key"))] = event
        auth = [self.event_id_of(by_key[("m.room.create", "")], made),
                self.event_id_of(by_key[("m.room.power_levels", "")], made),
                join_id]
        return RoomChain(self.peer, room_id, auth, join_id, join["depth"])

    @staticmethod
    def event_id_of(event: dict, _made: dict) -> str:
        # Room versions 4+ carry no event_id; it is the reference hash.
        if "event_id" in event:
            return event["event_id"]
        reference = {k: v for k, v in redacted(event).items() if k not in ("signatures", "unsigned")}
        return "$" + unpadded_b64(
            hashlib.sha256(canonicaljson.encode_canonical_json(reference)).digest(), urlsafe=True)

    def send_transaction(self, pdus: list[dict]) -> tuple[int, dict]:
        txn = f"lt{time.time_ns()}"
        return self.request("PUT", f"/_matrix/federation/v1/send/{txn}",
                            {"origin": self.peer.server_name,
                             "origin_server_ts": int(time.time() * 1000), "pdus": pdus})


class RoomChain:
    """The peer's user's messages in one room, each citing the one before."""

    def __init__(self, peer: FederationPeer, room_id: str, auth_events: list[str],
                 last_event: str, depth: int):
        self.peer = peer
        self.room_id = room_id
        self.auth_events = auth_events
        self.last_event = last_event
        self.depth = depth

    def messages(self, count: int, label: str) -> list[tuple[str, dict]]:
        built = []
        for n in range(count):
            self.depth += 1
            event = {
                "type": "m.room.message",
                "room_id": self.room_id,
                "sender": self.peer.user_id,
                "origin": self.peer.server_name,
                "origin_server_ts": int(time.time() * 1000),
                "content": {"msgtype": "m.text", "body": f"{label} {n}"},
                "depth": self.depth,
                "prev_events": [self.last_event],
                "auth_events": self.auth_events,
            }
            event_id, event = self.peer.finish_event(event)
            self.last_event = event_id
            built.append((event_id, event))
        return built
