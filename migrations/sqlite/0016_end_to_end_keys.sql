-- End-to-end encryption. Each device's identity keys, as the device signed
-- them (canonical JSON).
CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys waiting to be claimed: each is handed out once, and goes.
-- key_id is the whole ID (algorithm:name); key_json canonical JSON.
CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- Each device's fallback key per algorithm, handed out (and marked used)
-- when no one-time key is left.
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- To-device messages waiting for their device, in stream order; removed
-- once the device's next sync acknowledges them.
CREATE TABLE to_device_inbox (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    position   INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, position)
);

-- The to-device sends already taken, per sending device, so a retried
-- transaction delivers nothing twice; kept a day.
CREATE TABLE to_device_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

INSERT INTO stream_counters (stream, position) VALUES ('to_device', 0);
