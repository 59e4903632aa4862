// Two matrix-js-sdk clients (the engine of Element Web) against a
// homeserver: both start and reach PREPARED, then room creation, invite and
// join through sync, messages both ways, typing, read receipts, unread
// counts that rise with messages and reset with a receipt, a push rule
// changed through the SDK, scrollback, and a thread reply and an edit as
// the SDK aggregates them.
//
// Usage: node flow.mjs <homeserver URL> <alice session JSON> <bob session JSON>
// where a session is {"user_id", "device_id", "access_token"}.
// Prints one "ok <step>" line per step; exits non-zero on the first failure.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");

const STEP_TIMEOUT_MS = 30_000;
const [baseUrl, aliceSession, bobSession] = process.argv.slice(2);
if (!baseUrl || !aliceSession || !bobSession) {
    console.error("usage: node flow.mjs <homeserver URL> <alice session> <bob session>");
    process.exit(2);
}

function client(sessionJson) {
    const session = JSON.parse(sessionJson);
    return sdk.createClient({
        baseUrl,
        userId: session.user_id,
        deviceId: session.device_id,
        accessToken: session.access_token,
    });
}

/** Resolves with the first value `check` returns that is not undefined,
 * re-checking on each `event` of `emitter` and every 200 ms (some state,
 * such as a thread fetched in the background, changes without one); fails
 * after the step timeout. */
function waitFor(emitter, event, check, what) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            clearInterval(poll);
            emitter.off(event, listener);
            reject(new Error(`timed out waiting for ${what}`));
        }, STEP_TIMEOUT_MS);
        const listener = (...args) => {
            let value;
            try {
                value = check(...args);
            } catch (error) {
                clearTimeout(timer);
                clearInterval(poll);
                emitter.off(event, listener);
                reject(error);
                return;
            }
            if (value !== undefined) {
                clearTimeout(timer);
                clearInterval(poll);
                emitter.off(event, listener);
                resolve(value);
            }
        };
        const poll = setInterval(listener, 200);
        emitter.on(event, listener);
        listener();
    });
}

function ok(step) {
    console.log(`ok ${step}`);
}

async function start(matrixClient, name) {
    const prepared = waitFor(
        matrixClient,
        sdk.ClientEvent.Sync,
        (state) => (state === "PREPARED" || state === "SYNCING" ? state : undefined),
        `${name} to reach PREPARED`,
    );
    await matrixClient.startClient({ initialSyncLimit: 20 });
    await prepared;
    if (matrixClient.getSyncState() === "ERROR") {
        throw new Error(`${name}'s sync is in ERROR`);
    }
}

function bodies(room) {
    return room
        .getLiveTimeline()
        .getEvents()
        .filter((event) => event.getType() === "m.room.message")
        .map((event) => event.getContent().body);
}

function messageArrives(matrixClient, roomId, body, who) {
    return waitFor(
        matrixClient,
        sdk.RoomEvent.Timeline,
        () => {
            const room = matrixClient.getRoom(roomId);
            return room && bodies(room).includes(body) ? true : undefined;
        },
        `${who} to receive "${body}"`,
    );
}

const alice = client(aliceSession);
const bob = client(bobSession);
const aliceId = alice.getUserId();
const bobId = bob.getUserId();

try {
    await start(alice, "alice");
    await start(bob, "bob");
    ok("both clients reached PREPARED");
    if (!alice.pushRules || !alice.pushRules.global || !alice.pushRules.global.override) {
        throw new Error("alice has no push rules after starting");
    }
    ok("push rules loaded");

    const invited = waitFor(
        bob,
        sdk.RoomEvent.MyMembership,
        (room, membership) => (room && membership === "invite" ? room.roomId : undefined),
        "bob's invite",
    );
    const { room_id: roomId } = await alice.createRoom({
        preset: sdk.Preset.PrivateChat,
        name: "js-sdk flow",
        invite: [bobId],
    });
    if ((await invited) !== roomId) {
        throw new Error("bob was invited to another room");
    }
    ok("invite seen through sync");
    const aliceSeesJoin = waitFor(
        alice,
        sdk.RoomStateEvent.Members,
        () => (alice.getRoom(roomId)?.getMember(bobId)?.membership === "join" ? true : undefined),
        "alice to see bob join",
    );
    await bob.joinRoom(roomId);
    await aliceSeesJoin;
    ok("join seen through sync");

    const toBob = messageArrives(bob, roomId, "hello bob", "bob");
    await alice.sendMessage(roomId, { msgtype: "m.text", body: "hello bob" });
    await toBob;
    const toAlice = messageArrives(alice, roomId, "hello alice", "alice");
    const { event_id: bobsMessage } = await bob.sendMessage(roomId, {
        msgtype: "m.text",
        body: "hello alice",
    });
    await toAlice;
    ok("messages both ways");

    const aliceSeesTyping = waitFor(
        alice,
        sdk.RoomMemberEvent.Typing,
        (event, member) => (member && member.userId === bobId && member.typing ? true : undefined),
        "alice to see bob typing",
    );
    await bob.sendTyping(roomId, true, 30_000);
    await aliceSeesTyping;
    const aliceSeesStop = waitFor(
        alice,
        sdk.RoomMemberEvent.Typing,
        (event, member) => (member && member.userId === bobId && !member.typing ? true : undefined),
        "alice to see bob stop typing",
    );
    await bob.sendTyping(roomId, false);
    await aliceSeesStop;
    ok("typing seen by the other");

    const bobSeesReceipt = waitFor(
        bob,
        sdk.RoomEvent.Receipt,
        () => {
            const room = bob.getRoom(roomId);
            const readers = room ? room.getUsersReadUpTo(room.findEventById(bobsMessage)) : [];
            return readers.includes(aliceId) ? true : undefined;
        },
        "bob to see alice's read receipt",
    );
    const aliceRoom = alice.getRoom(roomId);
    await alice.sendReadReceipt(aliceRoom.findEventById(bobsMessage));
    await bobSeesReceipt;
    ok("read receipt seen by the other");

    const aliceCounts = () =>
        alice.getRoom(roomId)?.getUnreadNotificationCount(sdk.NotificationCountType.Total) ?? 0;
    const countsRise = waitFor(
        alice,
        sdk.ClientEvent.Sync,
        () => (aliceCounts() >= 2 ? true : undefined),
        "alice's unread count to rise with bob's messages",
    );
    await bob.sendMessage(roomId, { msgtype: "m.text", body: "count me 1" });
    const { event_id: lastCounted } = await bob.sendMessage(roomId, {
        msgtype: "m.text",
        body: "count me 2",
    });
    await countsRise;
    await messageArrives(alice, roomId, "count me 2", "alice");
    const countsReset = waitFor(
        alice,
        sdk.ClientEvent.Sync,
        () => (aliceCounts() === 0 ? true : undefined),
        "alice's unread count to go back to zero",
    );
    await alice.sendReadReceipt(alice.getRoom(roomId).findEventById(lastCounted));
    await countsReset;
    ok("notification counts rise and reset");

    const ruleArrives = waitFor(
        alice,
        sdk.ClientEvent.AccountData,
        () =>
            alice.pushRules?.global?.content?.some((rule) => rule.rule_id === "cake")
                ? true
                : undefined,
        "the new push rule in alice's client",
    );
    await alice.addPushRule("global", sdk.PushRuleKind.ContentSpecific, "cake", {
        actions: ["notify"],
        pattern: "cake",
    });
    await ruleArrives;
    const rule = await alice.getPushRules();
    if (!rule.global.content.some((r) => r.rule_id === "cake")) {
        throw new Error("the server does not list the new rule");
    }
    ok("push rule changed through the SDK");

    for (let n = 0; n < 30; n++) {
        await alice.sendMessage(roomId, { msgtype: "m.text", body: `scroll ${n}` });
    }
    await messageArrives(bob, roomId, "scroll 29", "bob");
    // A fresh client starts with a short timeline and pages back.
    const carol = client(bobSession);
    await carol.startClient({ initialSyncLimit: 5 });
    await waitFor(carol, sdk.ClientEvent.Sync, () => (carol.getRoom(roomId) ? true : undefined), "the room in a fresh client");
    const room = carol.getRoom(roomId);
    const before = bodies(room).length;
    for (let page = 0; page < 5 && !bodies(room).includes("hello bob"); page++) {
        await carol.scrollback(room, 20);
    }
    const after = bodies(room);
    if (!(after.length > before) || !after.includes("hello bob") || !after.includes("scroll 0")) {
        throw new Error(`scrollback did not reach the first messages: ${after.length} messages`);
    }
    const order = after.indexOf("scroll 0") < after.indexOf("scroll 29");
    if (!order) {
        throw new Error("scrollback put the messages out of order");
    }
    carol.stopClient();
    ok("scrollback through /messages");

    // A client with thread support, as Element runs it, sees a thread reply
    // in its thread and an edit in place of the original.
    const dave = client(aliceSession);
    await dave.startClient({ initialSyncLimit: 5, threadSupport: true });
    await waitFor(dave, sdk.ClientEvent.Sync, () => (dave.getRoom(roomId) ? true : undefined), "the room with thread support");
    const { event_id: rootId } = await bob.sendMessage(roomId, { msgtype: "m.text", body: "thread root" });
    await bob.sendMessage(roomId, rootId, { msgtype: "m.text", body: "in the thread" });
    const { event_id: typoId } = await bob.sendMessage(roomId, { msgtype: "m.text", body: "tpyo" });
    await bob.sendMessage(roomId, {
        msgtype: "m.text",
        body: "* typo",
        "m.new_content": { msgtype: "m.text", body: "typo" },
        "m.relates_to": { rel_type: "m.replace", event_id: typoId },
    });
    const daveRoom = dave.getRoom(roomId);
    await waitFor(
        dave,
        sdk.ClientEvent.Sync,
        () => {
            const thread = daveRoom.getThread(rootId);
            const replies = thread?.timeline?.map((event) => event.getContent().body) ?? [];
            return replies.includes("in the thread") ? true : undefined;
        },
        "the reply in its thread",
    ).catch((error) => {
        const threads = daveRoom.getThreads().map((thread) => ({
            id: thread.id,
            length: thread.length,
            bodies: thread.timeline.map((event) => event.getContent().body),
        }));
        throw new Error(`${error.message}; threads: ${JSON.stringify(threads)}; main: ${JSON.stringify(bodies(daveRoom).slice(-4))}`);
    });
    if (bodies(daveRoom).includes("in the thread")) {
        throw new Error("the thread reply is in the main timeline too");
    }
    await waitFor(
        dave,
        sdk.ClientEvent.Sync,
        () => (daveRoom.findEventById(typoId)?.getContent().body === "typo" ? true : undefined),
        "the edit to replace the original's content",
    );
    dave.stopClient();
    ok("thread reply and edit aggregated");
} catch (error) {
    console.error(`failed: ${error && error.stack ? error.stack : error}`);
    process.exitCode = 1;
} finally {
    alice.stopClient();
    bob.stopClient();
}
process.exit(process.exitCode ?? 0);
