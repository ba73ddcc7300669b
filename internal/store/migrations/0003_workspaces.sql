-- Repositories prepared into VMs: what was sent, as git object IDs, and
-- where the last export left its branch. They go with their VM.
CREATE TABLE workspaces (
    vm_id         TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    path          TEXT NOT NULL,
    repo          TEXT NOT NULL DEFAULT '',
    head          TEXT NOT NULL DEFAULT '',
    branch        TEXT NOT NULL DEFAULT '',
    index_commit  TEXT NOT NULL,
    index_tree    TEXT NOT NULL,
    base_commit   TEXT NOT NULL,
    base_tree     TEXT NOT NULL,
    readonly      INTEGER NOT NULL DEFAULT 0,
    export_branch TEXT NOT NULL DEFAULT '',
    export_commit TEXT NOT NULL DEFAULT '',
    prepared_at   TEXT NOT NULL,
    exported_at   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (vm_id, path)
);
