package cli

import (
	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmStopCommand() *cobra.Command {
	return a.lifecycleCommand("stop", "Shut VMs down (gracefully, then forcibly after stop_timeout)", (*client.Client).VMStop)
}
