-- The layer blobs (sha256:...) an OCI image was built from, space
-- separated: what `image prune` keeps in the blob cache.
ALTER TABLE images ADD COLUMN layers TEXT NOT NULL DEFAULT '';
