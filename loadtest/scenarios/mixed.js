// mixed: a client-like mix. USERS users share a few rooms (provision.py puts
// each in 3). Every user has two VUs, as a real client has two loops:
//   - a sync loop that long-polls /sync (records delivery_latency),
//   - an actor that waits a think time (THINK_MIN_MS..THINK_MAX_MS) and then
//     sends a message (70 %), pages /messages back from the live end (25 %),
//     or does a fresh initial /sync as a reconnecting client would (5 %).
// VUs 1..USERS are sync loops, USERS+1..2*USERS are actors.
//
//   k6 run -e BASE_URL=... -e FIXTURE=fixture.json -e DURATION=20s mixed.js
// (fixture: provision.py --scenario mixed --size USERS; 2 VUs per user)

import exec from 'k6/execution';
import { sleep } from 'k6';
import {
    DURATION, GRACEFUL_STOP, SUMMARY_TREND_STATS, SYNC_TIMEOUT_MS,
    loadFixture, recentMessages, sendMessage, syncOnce,
} from './lib.js';

const fixture = loadFixture();
const USERS = fixture.users.length;
const THINK_MIN_MS = parseInt(__ENV.THINK_MIN_MS || '500', 10);
const THINK_MAX_MS = parseInt(__ENV.THINK_MAX_MS || '2000', 10);

export const options = {
    scenarios: {
        mixed: {
            executor: 'constant-vus',
            vus: 2 * USERS,
            duration: DURATION,
            gracefulStop: GRACEFUL_STOP,
        },
    },
    summaryTrendStats: SUMMARY_TREND_STATS,
};

let since = null;

function pick(list) {
    return list[Math.floor(Math.random() * list.length)];
}

export default function () {
    const id = exec.vu.idInTest - 1;
    const user = fixture.users[id % USERS];
    if (id < USERS) {
        since = syncOnce(user, since || user.since, SYNC_TIMEOUT_MS);
        return;
    }
    sleep((THINK_MIN_MS + Math.random() * (THINK_MAX_MS - THINK_MIN_MS)) / 1000);
    const roll = Math.random();
    if (roll < 0.7) {
        sendMessage(user, pick(user.rooms), true);
    } else if (roll < 0.95) {
        recentMessages(user, pick(user.rooms), 20);
    } else {
        // timeout 0 and no since: an initial sync, returned at once.
        syncOnce(user, null, 0);
    }
}
