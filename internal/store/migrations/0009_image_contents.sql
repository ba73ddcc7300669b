-- Images by content: image_contents holds one row per set of files (kernel,
-- rootfs, modules, config), keyed by a digest over them; image_names maps
-- each name to one. A VM records the content it was created from
-- (vms.image_id), so replacing or deleting a name never changes the base
-- under an existing VM. Images registered before this migration keep their
-- files where they are, under the key 'name:NAME'.
CREATE TABLE image_contents (
    id           TEXT PRIMARY KEY,
    kernel_path  TEXT NOT NULL,
    initrd_path  TEXT NOT NULL DEFAULT '',
    rootfs_path  TEXT NOT NULL,
    modules_path TEXT NOT NULL DEFAULT '',
    source       TEXT NOT NULL DEFAULT '',
    digest       TEXT NOT NULL DEFAULT '',
    size_bytes   INTEGER NOT NULL DEFAULT 0,
    config       TEXT NOT NULL DEFAULT '',
    layers       TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL
);

INSERT INTO image_contents (id, kernel_path, initrd_path, rootfs_path, modules_path, source, digest, size_bytes, config, layers, created_at)
    SELECT 'name:' || name, kernel_path, initrd_path, rootfs_path, modules_path, source, digest, size_bytes, config, layers, created_at FROM images;

CREATE TABLE image_names (
    name       TEXT PRIMARY KEY,
    image_id   TEXT NOT NULL REFERENCES image_contents (id),
    created_at TEXT NOT NULL
);

INSERT INTO image_names (name, image_id, created_at) SELECT name, 'name:' || name, created_at FROM images;

DROP TABLE images;

-- Empty until the VM's image is local (a catalog image is fetched at
-- first boot); until then the VM holds its image by name.
ALTER TABLE vms ADD COLUMN image_id TEXT NOT NULL DEFAULT '';
UPDATE vms SET image_id = 'name:' || image WHERE image IN (SELECT name FROM image_names);
