-- How a VM is networked: 'bridge' (banger's bridge, an IP lease) or
-- 'none' (no network device; reached through the agent's tunnel).
ALTER TABLE vms ADD COLUMN network TEXT NOT NULL DEFAULT 'bridge';
