#!/usr/bin/env python3
"""Drives a homeserver through the end-to-end flow with matrix-nio.

Usage: nio_flow.py HOMESERVER_URL

Registers alice and bob (dummy user-interactive auth), logs them in, has
alice create a room and invite bob, bob join, alice send a message that
bob's long-poll sync (started before the send) receives, reads history
with room_messages, and sets alice's display name when the server offers
the profile endpoint. Exits 0 when every step passed, 1 with a message on
stderr at the first step that did not.
"""

import asyncio
import sys
import uuid

from nio import (
    AsyncClient,
    ErrorResponse,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    ProfileGetDisplayNameResponse,
    ProfileSetDisplayNameResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

PASSWORD = "nio-interop-password"
MESSAGE = "hello from matrix-nio"
DISPLAY_NAME = "Alice via nio"


class FlowError(Exception):
    """A step of the flow did not do what it should."""


def describe(response):
    if isinstance(response, ErrorResponse):
        status = getattr(response.transport_response, "status", "?")
        return f"HTTP {status} {response.status_code}: {response.message}"
    return repr(response)


def expect(response, kind, step):
    if not isinstance(response, kind):
        raise FlowError(
            f"{step}: expected {kind.__name__}, got "
            f"{type(response).__name__} ({describe(response)})"
        )
    print(f"ok: {step}")
    return response


async def run(url, clients):
    suffix = uuid.uuid4().hex[:8]
    names = {"alice": f"alice_{suffix}", "bob": f"bob_{suffix}"}

    user_ids = {}
    for who, name in names.items():
        registrar = AsyncClient(url)
        clients.append(registrar)
        registered = expect(
            await registrar.register(name, PASSWORD, device_name=f"nio register {who}"),
            RegisterResponse,
            f"register {who}",
        )
        user_ids[who] = registered.user_id
        if not registered.access_token:
            raise FlowError(f"register {who}: no access token in {registered!r}")

    alice = AsyncClient(url, user_ids["alice"])
    bob = AsyncClient(url, user_ids["bob"])
    clients.extend([alice, bob])
    expect(await alice.login(PASSWORD, device_name="nio alice"), LoginResponse, "login alice")
    expect(await bob.login(PASSWORD, device_name="nio bob"), LoginResponse, "login bob")

    created = expect(
        await alice.room_create(name="nio room", topic="interop"),
        RoomCreateResponse,
        "alice creates a room",
    )
    room_id = created.room_id
    expect(
        await alice.room_invite(room_id, user_ids["bob"]),
        RoomInviteResponse,
        "alice invites bob",
    )

    first = expect(await bob.sync(timeout=0), SyncResponse, "bob's initial sync")
    if room_id not in first.rooms.invite:
        raise FlowError(f"bob's initial sync does not show the invite to {room_id}")
    expect(await bob.join(room_id), JoinResponse, "bob joins")
    caught_up = expect(
        await bob.sync(timeout=0, since=first.next_batch),
        SyncResponse,
        "bob's sync after joining",
    )
    if room_id not in caught_up.rooms.join:
        raise FlowError(f"bob's sync after joining does not list {room_id} as joined")

    poll = asyncio.create_task(bob.sync(timeout=10000, since=caught_up.next_batch))
    await asyncio.sleep(0.3)
    if poll.done():
        raise FlowError(
            "bob's long-poll sync answered before anything was sent: "
            f"{describe(poll.result())}"
        )
    sent = expect(
        await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": MESSAGE}
        ),
        RoomSendResponse,
        "alice sends a message",
    )
    synced = expect(
        await asyncio.wait_for(poll, 60), SyncResponse, "bob's long-poll sync returns"
    )
    joined = synced.rooms.join.get(room_id)
    events = joined.timeline.events if joined else []
    delivered = [e for e in events if getattr(e, "event_id", None) == sent.event_id]
    if not delivered:
        raise FlowError(
            f"bob's long-poll sync lacks {sent.event_id}; timeline: {events!r}"
        )
    if not isinstance(delivered[0], RoomMessageText) or delivered[0].body != MESSAGE:
        raise FlowError(f"bob received {delivered[0]!r}, not the text {MESSAGE!r}")
    if delivered[0].sender != user_ids["alice"]:
        raise FlowError(f"the message's sender is {delivered[0].sender}")
    print("ok: the long-poll delivered alice's message")

    history = expect(
        await bob.room_messages(
            room_id, start=synced.next_batch, direction=MessageDirection.back, limit=50
        ),
        RoomMessagesResponse,
        "bob reads history",
    )
    texts = [e for e in history.chunk if isinstance(e, RoomMessageText)]
    if [e.event_id for e in texts] != [sent.event_id]:
        raise FlowError(f"history holds {texts!r}, expected only {sent.event_id}")
    if not history.end:
        print("note: history has no `end` token (it reached the start of the room)")

    renamed = await alice.set_displayname(DISPLAY_NAME)
    not_offered = (
        isinstance(renamed, ErrorResponse)
        and renamed.status_code == "M_UNRECOGNIZED"
        and getattr(renamed.transport_response, "status", None) == 404
    )
    if not_offered:
        print("note: the profile endpoint answered 404 M_UNRECOGNIZED; display name step skipped")
    else:
        expect(renamed, ProfileSetDisplayNameResponse, "alice sets her display name")
        got = expect(
            await bob.get_displayname(user_ids["alice"]),
            ProfileGetDisplayNameResponse,
            "bob reads alice's display name",
        )
        if got.displayname != DISPLAY_NAME:
            raise FlowError(f"alice's display name is {got.displayname!r}")


async def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1].rstrip("/")
    clients = []
    try:
        await run(url, clients)
    except FlowError as error:
        print(f"nio flow FAILED: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # any surprise is a failure too, with context
        print(f"nio flow FAILED with {type(error).__name__}: {error}", file=sys.stderr)
        raise
    finally:
        for client in clients:
            await client.close()
    print("nio flow passed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
