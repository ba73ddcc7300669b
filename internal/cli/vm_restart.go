package cli

import (
	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmRestartCommand() *cobra.Command {
	return a.lifecycleCommand("restart", "Stop and start VMs", (*client.Client).VMRestart)
}
