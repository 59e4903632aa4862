// Shared helpers for the scenarios: fixture loading, Matrix requests, metrics.
//
// Every scenario reads BASE_URL (default http://127.0.0.1:8008) and FIXTURE
// (a JSON file written by provision.py) from the environment.

import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8008').replace(/\/$/, '');

// The Client-Server API of a user's server: BASE_URL, unless the fixture
// gives the user its own (users on two federating servers).
function cs(user) {
    return `${(user.base_url || BASE_URL).replace(/\/$/, '')}/_matrix/client/v3`;
}

export const DURATION = __ENV.DURATION || '20s';
// Long-poll timeout; the graceful stop must outlast it so the last polls end cleanly.
export const SYNC_TIMEOUT_MS = parseInt(__ENV.SYNC_TIMEOUT_MS || '10000', 10);
export const GRACEFUL_STOP = `${Math.ceil(SYNC_TIMEOUT_MS / 1000) + 5}s`;

// Must match provision.py's SYNC_FILTER so the fixture's `since` fits.
const SYNC_FILTER = JSON.stringify({ room: { timeline: { limit: 50 } } });

// p(50) and p(99) are what the runner reads from --summary-export.
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'p(50)', 'p(90)', 'p(99)', 'max', 'count'];

// Custom metrics so provisioning-style traffic never mixes into the numbers.
export const sendLatency = new Trend('send_latency', true);
export const deliveryLatency = new Trend('delivery_latency', true);
export const syncLatency = new Trend('sync_latency', true);
export const messagesLatency = new Trend('messages_latency', true);
export const eventsSent = new Counter('events_sent');
export const eventsDelivered = new Counter('events_delivered');
export const requestErrors = new Counter('request_errors');
// The encrypted scenario: key claims and to-device messages.
export const claimLatency = new Trend('claim_latency', true);
export const keysClaimed = new Counter('keys_claimed');
export const toDeviceSendLatency = new Trend('to_device_send_latency', true);
export const toDeviceSent = new Counter('to_device_sent');
export const toDeviceLatency = new Trend('to_device_latency', true);
export const toDeviceDelivered = new Counter('to_device_delivered');

// One parse shared by all VUs instead of one copy each.
export function loadFixture() {
    const path = __ENV.FIXTURE;
    if (!path) {
        throw new Error('FIXTURE is not set: run provision.py first (see loadtest/README.md)');
    }
    return new SharedArray('fixture', () => [JSON.parse(open(path))])[0];
}

function auth(user, name) {
    // The `name` tag groups URLs that carry ids, so k6 keeps one series per endpoint.
    return { headers: { Authorization: `Bearer ${user.token}`, 'Content-Type': 'application/json' }, tags: { name } };
}

function failed(res, what) {
    requestErrors.add(1, { endpoint: what });
    console.warn(`${what}: HTTP ${res.status} ${String(res.body || res.error).slice(0, 200)}`);
}

let txnCounter = 0;

// Sends one m.room.message. `stamp` puts the send start time into the content
// so a receiver can compute delivery latency against the same clock.
export function sendMessage(user, roomId, stamp) {
    txnCounter += 1;
    const txn = `lt${__VU}.${txnCounter}.${Date.now()}`;
    const url = `${cs(user)}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`;
    const content = { msgtype: 'm.text', body: `load test message ${txnCounter}` };
    const started = Date.now();
    if (stamp) {
        content.lt_sent_ms = started;
    }
    const res = http.put(url, JSON.stringify(content), auth(user, 'send'));
    const ok = check(res, { 'send 200': (r) => r.status === 200 });
    if (ok) {
        sendLatency.add(res.timings.duration);
        eventsSent.add(1);
    } else {
        failed(res, 'send');
    }
    return ok;
}

// One /sync. Returns the next since token (or the old one on failure). On an
// incremental sync, records delivery latency for every stamped event not sent
// by `user` (an initial sync only replays history, so it records nothing).
export function syncOnce(user, since, timeoutMs) {
    const params = auth(user, 'sync');
    params.timeout = `${timeoutMs + 30000}ms`;
    let url = `${cs(user)}/sync?timeout=${timeoutMs}&filter=${encodeURIComponent(SYNC_FILTER)}`;
    if (since) {
        url += `&since=${encodeURIComponent(since)}`;
    }
    const res = http.get(url, params);
    // Taken before parsing: parsing is the load generator's cost, not the server's.
    const returned = Date.now();
    if (!check(res, { 'sync 200': (r) => r.status === 200 })) {
        failed(res, 'sync');
        return since;
    }
    syncLatency.add(res.timings.duration);
    const body = res.json();
    if (!since) {
        return body.next_batch;
    }
    const joined = (body.rooms && body.rooms.join) || {};
    for (const roomId of Object.keys(joined)) {
        const events = (joined[roomId].timeline && joined[roomId].timeline.events) || [];
        for (const ev of events) {
            const sent = ev.content && ev.content.lt_sent_ms;
            if (typeof sent === 'number' && ev.sender !== user.user_id) {
                deliveryLatency.add(returned - sent);
                eventsDelivered.add(1);
            }
        }
    }
    const toDevice = (body.to_device && body.to_device.events) || [];
    for (const ev of toDevice) {
        const sent = ev.content && ev.content.lt_sent_ms;
        if (typeof sent === 'number') {
            toDeviceLatency.add(returned - sent);
            toDeviceDelivered.add(1);
        }
    }
    return body.next_batch || since;
}

// Claims one one-time key of each device, as a client does before it
// shares a room key with devices it has no session with.
export function claimKeys(user, devices) {
    const wanted = {};
    for (const device of devices) {
        wanted[device.user_id] = wanted[device.user_id] || {};
        wanted[device.user_id][device.device_id] = 'signed_curve25519';
    }
    const res = http.post(`${cs(user)}/keys/claim`, JSON.stringify({ one_time_keys: wanted }), auth(user, 'claim'));
    if (!check(res, { 'claim 200': (r) => r.status === 200 })) {
        failed(res, 'claim');
        return;
    }
    claimLatency.add(res.timings.duration);
    const claimed = res.json().one_time_keys || {};
    let keys = 0;
    for (const byDevice of Object.values(claimed)) {
        keys += Object.keys(byDevice).length;
    }
    keysClaimed.add(keys);
}

// One to-device message to each device (a room key, as a client shares it:
// an Olm-sized ciphertext), stamped with the send time.
export function sendToDevices(user, devices) {
    txnCounter += 1;
    const txn = `ltd${__VU}.${txnCounter}.${Date.now()}`;
    const started = Date.now();
    const messages = {};
    for (const device of devices) {
        messages[device.user_id] = messages[device.user_id] || {};
        messages[device.user_id][device.device_id] = {
            algorithm: 'm.olm.v1.curve25519-aes-sha2',
            sender_key: 'bG9hZCB0ZXN0',
            ciphertext: 'x'.repeat(600),
            lt_sent_ms: started,
        };
    }
    const url = `${cs(user)}/sendToDevice/m.room.encrypted/${txn}`;
    const res = http.put(url, JSON.stringify({ messages }), auth(user, 'send_to_device'));
    if (!check(res, { 'sendToDevice 200': (r) => r.status === 200 })) {
        failed(res, 'send_to_device');
        return;
    }
    toDeviceSendLatency.add(res.timings.duration);
    toDeviceSent.add(devices.length);
}

// Backward pagination from the live end of a room, as a client opening a room does.
export function recentMessages(user, roomId, limit) {
    const url = `${cs(user)}/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=${limit}`;
    const res = http.get(url, auth(user, 'messages'));
    if (check(res, { 'messages 200': (r) => r.status === 200 })) {
        messagesLatency.add(res.timings.duration);
    } else {
        failed(res, 'messages');
    }
}
