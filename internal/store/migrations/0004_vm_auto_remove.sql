-- A VM made by `vm run --rm` is tied to its client's connection: the daemon
-- deletes it when that connection goes, and at start-up (every connection
-- of the previous daemon is gone).
ALTER TABLE vms ADD COLUMN auto_remove INTEGER NOT NULL DEFAULT 0;
