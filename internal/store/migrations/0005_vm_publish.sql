-- Guest ports published on the host's loopback (`--publish 8080:80`), as
-- space-separated HOST:GUEST/PROTO; empty for none.
ALTER TABLE vms ADD COLUMN publish TEXT NOT NULL DEFAULT '';
