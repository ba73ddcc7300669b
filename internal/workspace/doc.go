// Package workspace carries a host git repository into a guest and the
// guest's work back out. It runs in the CLI, as the invoking user: host-side
// git has that user's permissions, and the guest is reached through a Guest
// (the VM's pinned SSH connection, which the daemon authorises).
//
// Prepare never writes to the host repository: a snapshot of the working
// state is made with a temporary index and banger's own object directory
// (which lists the repository's objects as alternates), and the repository's
// existing packs travel with their indexes in one tar stream, so the guest
// never re-indexes history. Export reads nothing from the guest but a pack
// that git checks object by object, runs with hooks off, never reads the
// guest's git config, and moves a branch only by compare-and-swap.
package workspace
