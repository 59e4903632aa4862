#!/usr/bin/env python3
"""Creates the users and rooms a k6 scenario needs and writes them as a JSON fixture.

Users are registered through the shared-secret admin API
(`/_synapse/admin/v1/register`), which Myelin and Synapse both serve, so the
same provisioning works on either server without enabling open registration.
Only the Python standard library is used.

Standalone use (the runner calls `provision()` directly):

    python3 loadtest/provision.py --base-url http://127.0.0.1:8008 \
        --shared-secret SECRET --scenario send --size 10 > fixture.json
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

SCENARIOS = ("send", "sync_wake", "fanout", "encrypted", "mixed")

# Same filter the k6 scripts use, so the `since` token comes from an equal sync.
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 50}}}, separators=(",", ":"))

# Enough parallelism to hide per-request latency; more would only fight over the 2 cores.
WORKERS = 4


class MatrixError(RuntimeError):
    pass


class Client:
    """A minimal Client-Server API client; one per user."""

    def __init__(self, base_url: str, token: str | None = None, user_id: str | None = None,
                 device_id: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.user_id = user_id
        self.device_id = device_id

    def request(self, method: str, path: str, body=None, query=None, timeout=120):
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise MatrixError(f"{method} {path} -> {err.code}: {detail}") from None

    def create_room(self, preset: str) -> str:
        return self.request("POST", "/_matrix/client/v3/createRoom", {"preset": preset})["room_id"]

    def invite(self, room_id: str, user_id: str) -> None:
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/invite"
        self.request("POST", path, {"user_id": user_id})

    def join(self, room_id: str) -> None:
        self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/join", {})

    def send_text(self, room_id: str, text: str) -> None:
        txn = secrets.token_hex(8)
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}"
        self.request("PUT", path, {"msgtype": "m.text", "body": text})

    def since(self) -> str:
        """next_batch of an initial sync: where the k6 sync loop starts."""
        query = {"filter": SYNC_FILTER, "timeout": "0"}
        return self.request("GET", "/_matrix/client/v3/sync", query=query)["next_batch"]

    def upload_one_time_keys(self, count: int) -> None:
        """Stand-in one-time keys, as a device publishes them (nobody decrypts
        anything in a load test, so their content only has to be unique)."""
        for start in range(0, count, 100):
            keys = {
                f"signed_curve25519:lt{n:06d}": {"key": secrets.token_urlsafe(32), "signatures": {}}
                for n in range(start, min(count, start + 100))
            }
            self.request("POST", "/_matrix/client/v3/keys/upload", {"one_time_keys": keys})

    def as_user(self) -> dict:
        return {"user_id": self.user_id, "token": self.token, "device_id": self.device_id}


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def register(base_url: str, shared_secret: str, username: str) -> Client:
    """Shared-secret registration: GET a nonce, POST with an HMAC-SHA1 over the fields."""
    anon = Client(base_url)
    nonce = anon.request("GET", "/_synapse/admin/v1/register")["nonce"]
    password = secrets.token_urlsafe(12)
    message = b"\x00".join([nonce.encode(), username.encode(), password.encode(), b"notadmin"])
    mac = hmac.new(shared_secret.encode(), message, hashlib.sha1).hexdigest()
    body = {"nonce": nonce, "username": username, "password": password, "admin": False, "mac": mac}
    reply = anon.request("POST", "/_synapse/admin/v1/register", body)
    return Client(base_url, reply["access_token"], reply["user_id"], reply.get("device_id"))


def register_many(base_url: str, shared_secret: str, prefix: str, count: int) -> list[Client]:
    # A random suffix keeps names unique if a fixture is provisioned twice on one server.
    tag = secrets.token_hex(3)
    names = [f"{prefix}{tag}_{i}" for i in range(count)]
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda name: register(base_url, shared_secret, name), names))


def parallel(fn, items) -> list:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(fn, items))


def provision_send(base_url, secret, size):
    """One user per VU, each alone in its own room: sends never contend on a room."""
    users = register_many(base_url, secret, "send", size)
    rooms = parallel(lambda u: u.create_room("private_chat"), users)
    return {"users": [dict(u.as_user(), room_id=r) for u, r in zip(users, rooms)]}


def provision_sync_wake(base_url, secret, size):
    """`size` pairs; the sender creates a private room and invites its receiver."""
    users = register_many(base_url, secret, "wake", 2 * size)
    senders, receivers = users[0::2], users[1::2]

    def pair(i):
        sender, receiver = senders[i], receivers[i]
        room_id = sender.create_room("private_chat")
        sender.invite(room_id, receiver.user_id)
        receiver.join(room_id)
        return room_id

    rooms = parallel(pair, range(size))
    # Taken after every room exists, so the first incremental sync is small.
    sinces = parallel(lambda u: u.since(), receivers)
    return {
        "pairs": [
            {"room_id": r, "sender": s.as_user(), "receiver": dict(rc.as_user(), since=since)}
            for r, s, rc, since in zip(rooms, senders, receivers, sinces)
        ]
    }


def provision_fanout(base_url, secret, size):
    """One public room: a sender plus `size` members."""
    users = register_many(base_url, secret, "fan", size + 1)
    sender, members = users[0], users[1:]
    room_id = sender.create_room("public_chat")
    parallel(lambda m: m.join(room_id), members)
    sinces = parallel(lambda m: m.since(), members)
    return {
        "room_id": room_id,
        "sender": sender.as_user(),
        "members": [dict(m.as_user(), since=s) for m, s in zip(members, sinces)],
    }


# encrypted: one-time keys each member publishes, more than the run claims.
ENCRYPTED_KEYS_PER_DEVICE = 300


def provision_encrypted(base_url, secret, size):
    """The fanout room, every member's device with one-time keys to claim."""
    fixture = provision_fanout(base_url, secret, size)
    members = [Client(base_url, m["token"], m["user_id"]) for m in fixture["members"]]
    parallel(lambda m: m.upload_one_time_keys(ENCRYPTED_KEYS_PER_DEVICE), members)
    return fixture


# mixed: each user sits in this many rooms, and each room starts with some history.
MIXED_ROOMS_PER_USER = 3
MIXED_HISTORY = 20


def provision_mixed(base_url, secret, size):
    """`size` users spread over size/3 public rooms (at least 2), each user in 3 of them."""
    users = register_many(base_url, secret, "mix", size)
    room_count = max(2, size // 3)
    creators = [users[i % size] for i in range(room_count)]
    rooms = parallel(lambda c: c.create_room("public_chat"), creators)
    per_user = min(MIXED_ROOMS_PER_USER, room_count)
    memberships = [[rooms[(i + k) % room_count] for k in range(per_user)] for i in range(size)]

    def join_all(i):
        for room_id in memberships[i]:
            if users[i] is not creators[rooms.index(room_id)]:
                users[i].join(room_id)

    parallel(join_all, range(size))

    # History for /messages to page through.
    def seed(j):
        for n in range(MIXED_HISTORY):
            creators[j].send_text(rooms[j], f"history {n}")

    parallel(seed, range(room_count))
    sinces = parallel(lambda u: u.since(), users)
    return {
        "rooms": rooms,
        "users": [
            dict(u.as_user(), rooms=m, since=s) for u, m, s in zip(users, memberships, sinces)
        ],
    }


BUILDERS = {
    "send": provision_send,
    "sync_wake": provision_sync_wake,
    "fanout": provision_fanout,
    "encrypted": provision_encrypted,
    "mixed": provision_mixed,
}


def provision(base_url: str, shared_secret: str, scenario: str, size: int) -> dict:
    return BUILDERS[scenario](base_url, shared_secret, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8008")
    parser.add_argument("--shared-secret", required=True, help="registration_shared_secret")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--size", type=int, default=10,
                        help="users (send, mixed), pairs (sync_wake) or members (fanout, encrypted)")
    args = parser.parse_args()
    json.dump(provision(args.base_url, args.shared_secret, args.scenario, args.size), sys.stdout)


if __name__ == "__main__":
    main()
