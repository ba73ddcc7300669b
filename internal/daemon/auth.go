package daemon

import (
	"fmt"
	"os"

	"github.com/banger-dev/banger/internal/rpc"
)

// authorize is the daemon's whole permission policy, applied to the access
// level each method declares in the method table.
func (d *Daemon) authorize(c rpc.Caller, a rpc.Access) error {
	if a == rpc.AccessAny {
		return nil
	}
	if c.UID == 0 || c.UID == uint32(os.Geteuid()) {
		return nil
	}
	if d.hasGroup && c.InGroup(d.groupID) {
		return nil
	}
	if !d.hasGroup {
		return fmt.Errorf("permission denied: uid %d is not root, and group %q does not exist on this host; create it (groupadd %s), add the user (usermod -aG %s USER) and log in again",
			c.UID, d.config().SocketGroup, d.config().SocketGroup, d.config().SocketGroup)
	}
	return fmt.Errorf("permission denied: uid %d is neither root nor in group %q; add the user with `usermod -aG %s USER` and log in again",
		c.UID, d.config().SocketGroup, d.config().SocketGroup)
}
