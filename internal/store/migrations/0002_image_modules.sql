-- Where an image's kernel modules live on the host, for building the
-- initramfs; empty when the kernel needs none.
ALTER TABLE images ADD COLUMN modules_path TEXT NOT NULL DEFAULT '';
