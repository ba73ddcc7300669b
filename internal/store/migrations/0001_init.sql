-- Durable facts only. Transient handles (PIDs, tap names, loop devices)
-- never belong here: they live in memory and in each VM's handles file.

CREATE TABLE images (
    name        TEXT PRIMARY KEY,
    kernel_path TEXT NOT NULL,
    initrd_path TEXT NOT NULL DEFAULT '',
    rootfs_path TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT '',
    digest      TEXT NOT NULL DEFAULT '',
    size_bytes  INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);

-- vms.image names an image or a catalog entry that may not be pulled yet,
-- so it is not a foreign key.
CREATE TABLE vms (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    image      TEXT NOT NULL,
    vcpus      INTEGER NOT NULL CHECK (vcpus BETWEEN 1 AND 32),
    memory_mib INTEGER NOT NULL CHECK (memory_mib >= 128),
    disk_mib   INTEGER NOT NULL CHECK (disk_mib >= 1024),
    mac        TEXT NOT NULL UNIQUE,
    state      TEXT NOT NULL CHECK (state IN ('created', 'starting', 'running', 'stopping', 'stopped', 'error')),
    last_error TEXT NOT NULL DEFAULT '',
    driver     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One guest IP per VM; deleting the VM frees its address.
CREATE TABLE ip_leases (
    ip        TEXT PRIMARY KEY,
    vm_id     TEXT NOT NULL UNIQUE REFERENCES vms (id) ON DELETE CASCADE,
    leased_at TEXT NOT NULL
);

CREATE TABLE operations (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    phase       TEXT NOT NULL DEFAULT '',
    done        INTEGER NOT NULL DEFAULT 0,
    total       INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    finished_at TEXT
);

CREATE INDEX operations_finished ON operations (finished_at);
