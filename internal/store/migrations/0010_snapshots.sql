-- A VM's snapshots: memory and device state plus copies of its writable
-- disks, in <vm dir>/snapshots/<name>/. What a restore must match is kept
-- with each: the monitor and its version, the image content, vCPUs and
-- memory. They go with their VM.
CREATE TABLE snapshots (
    vm_id      TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    driver     TEXT NOT NULL,
    version    TEXT NOT NULL,
    image_id   TEXT NOT NULL,
    vcpus      INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    disk_mib   INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    PRIMARY KEY (vm_id, name)
);
