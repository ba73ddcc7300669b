-- The runtime config of an image pulled from OCI (env, entrypoint, cmd,
-- working dir, user) as JSON; empty for images that boot their own init.
ALTER TABLE images ADD COLUMN config TEXT NOT NULL DEFAULT '';
