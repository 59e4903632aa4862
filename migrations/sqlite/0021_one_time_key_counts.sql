-- How many one-time keys each device has waiting, per algorithm, kept by
-- triggers as keys are added and claimed, so every sync reads one row per
-- algorithm instead of counting the keys. A count that reaches 0 stays.
CREATE TABLE one_time_key_counts (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
);

INSERT INTO one_time_key_counts (user_id, device_id, algorithm, count)
SELECT user_id, device_id, algorithm, COUNT(*) FROM one_time_keys
GROUP BY user_id, device_id, algorithm;

CREATE TRIGGER one_time_key_added AFTER INSERT ON one_time_keys
BEGIN
    INSERT OR IGNORE INTO one_time_key_counts (user_id, device_id, algorithm, count)
    VALUES (NEW.user_id, NEW.device_id, NEW.algorithm, 0);
    UPDATE one_time_key_counts SET count = count + 1
    WHERE user_id = NEW.user_id AND device_id = NEW.device_id AND algorithm = NEW.algorithm;
END;

CREATE TRIGGER one_time_key_removed AFTER DELETE ON one_time_keys
BEGIN
    UPDATE one_time_key_counts SET count = count - 1
    WHERE user_id = OLD.user_id AND device_id = OLD.device_id AND algorithm = OLD.algorithm;
END;
