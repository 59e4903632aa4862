// sync_wake: PAIRS sender/receiver pairs, each pair alone in a private room.
// The receiver long-polls /sync; the sender sends a message every
// SEND_INTERVAL_MS carrying its send start time. delivery_latency is the time
// the receiver's /sync returned with the event minus that start: how fast a
// write wakes a waiting sync. Odd VUs receive, even VUs send.
//
//   k6 run -e BASE_URL=... -e FIXTURE=fixture.json -e DURATION=20s sync_wake.js
// (fixture: provision.py --scenario sync_wake --size PAIRS; 2 VUs per pair)

import exec from 'k6/execution';
import { sleep } from 'k6';
import {
    DURATION, GRACEFUL_STOP, SUMMARY_TREND_STATS, SYNC_TIMEOUT_MS, loadFixture, sendMessage, syncOnce,
} from './lib.js';

const fixture = loadFixture();
const SEND_INTERVAL_MS = parseInt(__ENV.SEND_INTERVAL_MS || '500', 10);
// Lets every receiver get into its first long-poll before anything is sent.
const WARMUP_MS = 1000;

export const options = {
    scenarios: {
        sync_wake: {
            executor: 'constant-vus',
            vus: 2 * fixture.pairs.length,
            duration: DURATION,
            gracefulStop: GRACEFUL_STOP,
        },
    },
    summaryTrendStats: SUMMARY_TREND_STATS,
};

let since = null;

export default function () {
    const id = exec.vu.idInTest - 1;
    const pair = fixture.pairs[Math.floor(id / 2) % fixture.pairs.length];
    if (id % 2 === 0) {
        since = syncOnce(pair.receiver, since || pair.receiver.since, SYNC_TIMEOUT_MS);
        return;
    }
    if (exec.vu.iterationInScenario === 0) {
        // Spread the pairs over one interval so sends do not arrive in lockstep.
        sleep((WARMUP_MS + Math.random() * SEND_INTERVAL_MS) / 1000);
    }
    sendMessage(pair.sender, pair.room_id, true);
    sleep(SEND_INTERVAL_MS / 1000);
}
