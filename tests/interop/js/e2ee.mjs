// matrix-js-sdk with its Rust crypto (the engine of Element Web) against a
// homeserver: two users in an encrypted room decrypt each other's messages;
// alice sets up cross-signing and secret storage with a key backup; a
// second device of hers decrypts what is sent after it logged in; a fresh
// login restores the room keys from the backup and decrypts an older
// message.
//
// Usage: node e2ee.mjs <homeserver URL> <alice session> <bob session> <alice's password> [bob's homeserver URL]
// where a session is {"user_id", "device_id", "access_token"}. With bob on
// another homeserver, everything between them crosses federation: the
// invite, key queries and claims, room keys as to-device messages, and
// alice's new device as a device-list update.
// Prints one "ok <step>" line per step; exits non-zero on the first failure.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");

const STEP_TIMEOUT_MS = 60_000;
const [baseUrl, aliceSession, bobSession, alicePassword, bobBaseUrl] = process.argv.slice(2);
if (!baseUrl || !aliceSession || !bobSession || !alicePassword) {
    console.error("usage: node e2ee.mjs <homeserver URL> <alice session> <bob session> <password>");
    process.exit(2);
}

/** The secret storage key alice creates, handed to her clients when they ask. */
let secretStorageKey = null;
const cryptoCallbacks = {
    getSecretStorageKey: async ({ keys }) => {
        if (!secretStorageKey) {
            return null;
        }
        const keyId = Object.keys(keys).find((id) => id === secretStorageKey.keyId) ?? Object.keys(keys)[0];
        return [keyId, secretStorageKey.privateKey];
    },
};

function client(session, homeserver = baseUrl) {
    return sdk.createClient({
        baseUrl: homeserver,
        userId: session.user_id,
        deviceId: session.device_id,
        accessToken: session.access_token,
        cryptoCallbacks,
    });
}

/** Logs alice in again: a new device. */
async function newAliceDevice() {
    const anonymous = sdk.createClient({ baseUrl });
    const login = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: JSON.parse(aliceSession).user_id },
        password: alicePassword,
    });
    return client(login);
}

/** Resolves with the first value `check` gives that is not undefined,
 * checked on each `event` of `emitter` and every 200 ms; fails after the
 * step timeout. */
function waitFor(emitter, event, check, what) {
    return new Promise((resolve, reject) => {
        const finish = (settle, value) => {
            clearTimeout(timer);
            clearInterval(poll);
            emitter.off(event, listener);
            settle(value);
        };
        const timer = setTimeout(
            () => finish(reject, new Error(`timed out waiting for ${what}`)),
            STEP_TIMEOUT_MS,
        );
        const listener = () => {
            Promise.resolve()
                .then(check)
                .then(
                    (value) => value !== undefined && finish(resolve, value),
                    (error) => finish(reject, error),
                );
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
    await matrixClient.initRustCrypto({ useIndexedDB: false });
    const prepared = waitFor(
        matrixClient,
        sdk.ClientEvent.Sync,
        () => {
            const state = matrixClient.getSyncState();
            return state === "PREPARED" || state === "SYNCING" ? state : undefined;
        },
        `${name} to reach PREPARED`,
    );
    await matrixClient.startClient({ initialSyncLimit: 20 });
    await prepared;
}

/** The clear bodies of the room's messages, decrypted where they can be. */
function bodies(room) {
    return room
        .getLiveTimeline()
        .getEvents()
        .filter((event) => event.getType() === "m.room.message" && !event.isDecryptionFailure())
        .map((event) => event.getContent().body);
}

function decrypts(matrixClient, roomId, body, who) {
    return waitFor(
        matrixClient,
        sdk.RoomEvent.Timeline,
        () => {
            const room = matrixClient.getRoom(roomId);
            return room && bodies(room).includes(body) ? true : undefined;
        },
        `${who} to decrypt "${body}"`,
    );
}

const alice = client(JSON.parse(aliceSession));
const bob = client(JSON.parse(bobSession), bobBaseUrl || baseUrl);
const aliceId = alice.getUserId();
const bobId = bob.getUserId();
const started = [alice, bob];

try {
    await start(alice, "alice");
    await start(bob, "bob");
    ok("both clients started with Rust crypto");

    const { room_id: roomId } = await alice.createRoom({
        invite: [bobId],
        initial_state: [
            {
                type: "m.room.encryption",
                state_key: "",
                content: { algorithm: "m.megolm.v1.aes-sha2" },
            },
        ],
    });
    await waitFor(
        bob,
        sdk.RoomEvent.MyMembership,
        () => (bob.getRoom(roomId)?.getMyMembership() === "invite" ? true : undefined),
        "bob's invite",
    );
    await bob.joinRoom(roomId);
    await waitFor(
        alice,
        sdk.RoomStateEvent.Members,
        () => (alice.getRoom(roomId)?.getMember(bobId)?.membership === "join" ? true : undefined),
        "bob's join",
    );
    if (!(await alice.getCrypto().isEncryptionEnabledInRoom(roomId))) {
        throw new Error("the room is not encrypted for alice");
    }
    ok("encrypted room joined");

    await alice.sendTextMessage(roomId, "secret one");
    await decrypts(bob, roomId, "secret one", "bob");
    await bob.sendTextMessage(roomId, "secret two");
    await decrypts(alice, roomId, "secret two", "alice");
    ok("messages both ways decrypted");

    const crypto = alice.getCrypto();
    await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: aliceId },
                password: alicePassword,
            });
        },
    });
    await crypto.bootstrapSecretStorage({
        createSecretStorageKey: async () => {
            const key = await crypto.createRecoveryKeyFromPassphrase();
            secretStorageKey = { keyId: null, privateKey: key.privateKey };
            return key;
        },
        setupNewKeyBackup: true,
    });
    const defaultKey = await alice.secretStorage.getDefaultKeyId();
    secretStorageKey.keyId = defaultKey;
    // Ready once the client has read its own new keys back (a key query
    // of its own, which may still be on its way).
    await waitFor(
        alice,
        sdk.ClientEvent.Sync,
        async () =>
            (await crypto.isCrossSigningReady()) && (await crypto.isSecretStorageReady())
                ? true
                : undefined,
        "cross-signing and secret storage to be ready",
    );
    const backupVersion = await waitFor(
        alice,
        sdk.ClientEvent.Sync,
        async () => (await crypto.getActiveSessionBackupVersion()) ?? undefined,
        "alice's key backup",
    );
    // The room key of "secret one" reaches the backup.
    await waitFor(
        alice,
        sdk.ClientEvent.Sync,
        async () => {
            const info = await alice.http.authedRequest(
                sdk.Method.Get,
                "/room_keys/version/" + encodeURIComponent(backupVersion),
            );
            return info.count > 0 ? true : undefined;
        },
        "room keys in the backup",
    );
    ok("cross-signing and secret storage with a key backup");

    const second = await newAliceDevice();
    started.push(second);
    await start(second, "alice's second device");
    // Bob's client learns of the new device from its device list (no query
    // of its own here), before it shares its room key with it.
    const secondId = second.getDeviceId();
    await waitFor(
        bob,
        sdk.ClientEvent.Sync,
        async () => {
            const devices = await bob.getCrypto().getUserDeviceInfo([aliceId]);
            return devices.get(aliceId)?.has(secondId) ? true : undefined;
        },
        "bob to see alice's second device",
    );
    await bob.sendTextMessage(roomId, "for both of alice's devices");
    await decrypts(second, roomId, "for both of alice's devices", "alice's second device");
    ok("second device decrypts new messages");

    const fresh = await newAliceDevice();
    started.push(fresh);
    await start(fresh, "alice's fresh login");
    await fresh.getCrypto().loadSessionBackupPrivateKeyFromSecretStorage();
    await fresh.getCrypto().restoreKeyBackup();
    await decrypts(fresh, roomId, "secret one", "alice's fresh login");
    ok("fresh login restores keys from the backup");
} catch (error) {
    console.error(error);
    process.exitCode = 1;
} finally {
    for (const matrixClient of started) {
        matrixClient.stopClient();
    }
}
process.exit(process.exitCode ?? 0);
