package cli

import (
	"fmt"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/api"
)

func (a *app) vmListCommand() *cobra.Command {
	var (
		asJSON  bool
		quiet   bool
		format  string
		filters []string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List VMs",
		Example: "  banger vm list --filter state=running -q\n" +
			"  banger vm list --format '{{.Name}} {{.IP}}'",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			match, err := vmFilter(filters)
			if err != nil {
				return usagef(cmd, "%s", err)
			}
			var tmpl *template.Template
			if format != "" {
				if tmpl, err = template.New("format").Parse(format); err != nil {
					return usagef(cmd, "--format: %s", err)
				}
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			all, err := c.VMList(cmd.Context())
			if err != nil {
				return err
			}
			vms := []api.VM{}
			for _, v := range all {
				if match(v) {
					vms = append(vms, v)
				}
			}
			switch {
			case asJSON:
				return printJSON(a.streams.Out, vms)
			case quiet:
				for _, v := range vms {
					fmt.Fprintln(a.streams.Out, v.Name)
				}
				return nil
			case tmpl != nil:
				for _, v := range vms {
					if err := tmpl.Execute(a.streams.Out, v); err != nil {
						return fmt.Errorf("--format: %w", err)
					}
					fmt.Fprintln(a.streams.Out)
				}
				return nil
			}
			tw := newTable(a.streams.Out, "NAME", "STATE", "IMAGE", "VCPUS", "MEMORY", "DISK", "IP", "CREATED")
			for _, v := range vms {
				state := v.State
				if v.Paused != "" {
					state += " (paused)"
				}
				ip := v.IP
				if ip == "" {
					ip = "(" + v.Network + ")"
				}
				row(tw, v.Name, state, v.Image, v.VCPUs, mib(v.MemoryMiB), mib(v.DiskMiB), ip, ago(v.CreatedAt))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print a JSON array")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only names")
	f.StringVar(&format, "format", "", "print each VM with a Go template (fields as in --json, e.g. {{.Name}} {{.State}} {{.IP}})")
	f.StringArrayVar(&filters, "filter", nil, "keep VMs matching KEY=VALUE: state, name, image, driver (repeatable; all must match)")
	return cmd
}

// vmFilter turns --filter KEY=VALUE flags into a predicate.
func vmFilter(filters []string) (func(api.VM) bool, error) {
	type cond struct{ key, value string }
	var conds []cond
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("--filter %q is not KEY=VALUE", f)
		case k != "state" && k != "name" && k != "image" && k != "driver":
			return nil, fmt.Errorf("--filter key %q is unknown; use state, name, image or driver", k)
		}
		conds = append(conds, cond{k, v})
	}
	return func(vm api.VM) bool {
		for _, c := range conds {
			got := map[string]string{"state": vm.State, "name": vm.Name, "image": vm.Image, "driver": vm.Driver}[c.key]
			if got != c.value {
				return false
			}
		}
		return true
	}, nil
}
