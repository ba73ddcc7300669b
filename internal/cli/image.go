package cli

import "github.com/spf13/cobra"

func (a *app) imageCommand() *cobra.Command {
	cmd := group("image", "Pull, export, list, show and delete images")
	cmd.AddCommand(a.imagePullCommand(), a.imageImportCommand(), a.imageRegisterCommand(), a.imagePromoteCommand(), a.imageExportCommand(), a.imagePruneCommand(), a.imageCatalogCommand(), a.imageListCommand(), a.imageShowCommand(), a.imageDeleteCommand())
	return cmd
}
