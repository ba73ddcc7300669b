package cli

import (
	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmStartCommand() *cobra.Command {
	return a.lifecycleCommand("start", "Boot VMs", (*client.Client).VMStart)
}
