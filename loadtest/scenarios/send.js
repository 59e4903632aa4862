// send: each VU is its own user in its own room and sends messages back to
// back for DURATION. Measures write throughput (events_sent / s) and the
// send latency (send_latency p50/p99) with no contention on a room.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8008 -e FIXTURE=fixture.json -e DURATION=20s send.js
// (fixture: provision.py --scenario send --size N; one VU per user)

import exec from 'k6/execution';
import { DURATION, SUMMARY_TREND_STATS, loadFixture, sendMessage } from './lib.js';

const fixture = loadFixture();

export const options = {
    scenarios: {
        send: {
            executor: 'constant-vus',
            vus: fixture.users.length,
            duration: DURATION,
            gracefulStop: '10s',
        },
    },
    summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
    const user = fixture.users[(exec.vu.idInTest - 1) % fixture.users.length];
    // No think time: the point is the server's ceiling.
    sendMessage(user, user.room_id, false);
}
