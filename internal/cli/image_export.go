package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/atomicfile"
)

func (a *app) imageExportCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export NAME -o FILE",
		Short: "Write an image as a bundle, to move it to another host",
		Long: "Writes image NAME as a bundle: one zstd-compressed tar holding the kernel, the\n" +
			"root filesystem, the kernel's modules and the image's config, led by a manifest\n" +
			"with every file's size and sha256. `banger image pull FILE` (or an https:// URL\n" +
			"of it) on any host checks every file against the manifest before the image is\n" +
			"registered. FILE is written as you, and appears only when the bundle is whole.",
		Example: "  banger image export debian-12 -o debian-12.tar.zst\n  banger image export app -o - | ssh other banger image pull -",
		Args:    exactArgs(1, "the image's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef(cmd, "give -o FILE (or -o - for standard output)")
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			if out == "-" {
				return c.ImageExport(ctx, args[0], a.streams.Out)
			}
			err = atomicfile.WriteWith(out, 0o644, func(f *os.File) error {
				var w io.Writer = f
				if bar := a.byteBar(-1, "exporting "+args[0]); bar != nil {
					defer func() { _ = bar.Finish() }()
					w = io.MultiWriter(f, bar)
				}
				return c.ImageExport(ctx, args[0], w)
			})
			if err != nil {
				return err
			}
			fi, _ := os.Stat(out)
			size := int64(0)
			if fi != nil {
				size = fi.Size()
			}
			fmt.Fprintf(a.streams.Out, "image %s exported to %s (%s)\n", args[0], out, bytesStr(size))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the bundle file to write (- for standard output)")
	return cmd
}
