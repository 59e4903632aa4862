-- How many one-time keys each device has waiting, per algorithm, kept by a
-- trigger as keys are added and claimed, so every sync reads one row per
-- algorithm instead of counting the keys. A count that reaches 0 stays.
-- No key is added or claimed between the first count and the trigger.
LOCK TABLE one_time_keys IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE one_time_key_counts (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
);

INSERT INTO one_time_key_counts (user_id, device_id, algorithm, count)
SELECT user_id, device_id, algorithm, COUNT(*) FROM one_time_keys
GROUP BY user_id, device_id, algorithm;

CREATE FUNCTION count_one_time_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO one_time_key_counts (user_id, device_id, algorithm, count)
        VALUES (NEW.user_id, NEW.device_id, NEW.algorithm, 1)
        ON CONFLICT (user_id, device_id, algorithm)
        DO UPDATE SET count = one_time_key_counts.count + 1;
        RETURN NEW;
    END IF;
    UPDATE one_time_key_counts SET count = count - 1
    WHERE user_id = OLD.user_id AND device_id = OLD.device_id AND algorithm = OLD.algorithm;
    RETURN OLD;
END;
$$;

CREATE TRIGGER one_time_keys_counted AFTER INSERT OR DELETE ON one_time_keys
FOR EACH ROW EXECUTE FUNCTION count_one_time_keys();
