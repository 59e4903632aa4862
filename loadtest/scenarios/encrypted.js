// encrypted: the fanout room as an encrypting client uses it. Before each
// message the sender claims a one-time key of every member's device and
// sends each device a to-device message (the room key), then sends the
// message; every member long-polls /sync and receives both. Measures
// to-device delivery against message delivery, claims, and CPU per
// to-device message. VU 1 sends, the others receive.
//
//   k6 run -e BASE_URL=... -e FIXTURE=fixture.json -e DURATION=20s encrypted.js
// (fixture: provision.py --scenario encrypted --size MEMBERS; MEMBERS + 1 VUs)

import exec from 'k6/execution';
import { sleep } from 'k6';
import {
    DURATION, GRACEFUL_STOP, SUMMARY_TREND_STATS, SYNC_TIMEOUT_MS, claimKeys, loadFixture,
    sendMessage, sendToDevices, syncOnce,
} from './lib.js';

const fixture = loadFixture();
const SEND_INTERVAL_MS = parseInt(__ENV.SEND_INTERVAL_MS || '500', 10);
const WARMUP_MS = 1000;

export const options = {
    scenarios: {
        encrypted: {
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
        claimKeys(fixture.sender, fixture.members);
        sendToDevices(fixture.sender, fixture.members);
        sendMessage(fixture.sender, fixture.room_id, true);
        sleep(SEND_INTERVAL_MS / 1000);
        return;
    }
    const member = fixture.members[(id - 1) % fixture.members.length];
    since = syncOnce(member, since || member.since, SYNC_TIMEOUT_MS);
}
