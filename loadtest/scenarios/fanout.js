// fanout: one room with MEMBERS members, each long-polling /sync, and one
// sender sending every SEND_INTERVAL_MS. Every message wakes every member:
// measures the cost of fan-out (CPU per event, events_delivered / s) and the
// delivery latency across all members. VU 1 sends, the others receive.
//
//   k6 run -e BASE_URL=... -e FIXTURE=fixture.json -e DURATION=20s fanout.js
// (fixture: provision.py --scenario fanout --size MEMBERS; MEMBERS + 1 VUs)

import exec from 'k6/execution';
import { sleep } from 'k6';
import {
    DURATION, GRACEFUL_STOP, SUMMARY_TREND_STATS, SYNC_TIMEOUT_MS, loadFixture, sendMessage, syncOnce,
} from './lib.js';

const fixture = loadFixture();
const SEND_INTERVAL_MS = parseInt(__ENV.SEND_INTERVAL_MS || '500', 10);
const WARMUP_MS = 1000;

export const options = {
    scenarios: {
        fanout: {
            executor: 'constant-vus',
            vus: fixture.members.length + 1,
            duration: DURATION,
            gracefulStop: GRACEFUL_STOP,
        },
    },
    summaryTrendStats: SUMMARY_TREND_STATS,
};

let since = null;

export default function () {
    const id = exec.vu.idInTest - 1;
    if (id === 0) {
        if (exec.vu.iterationInScenario === 0) {
            sleep(WARMUP_MS / 1000);
        }
        sendMessage(fixture.sender, fixture.room_id, true);
        sleep(SEND_INTERVAL_MS / 1000);
        return;
    }
    const member = fixture.members[(id - 1) % fixture.members.length];
    since = syncOnce(member, since || member.since, SYNC_TIMEOUT_MS);
}
