-- Live instances of a replicated role (event persisters sharing partitions).
CREATE TABLE group_instances (
    group_name TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (group_name, instance_id)
);
