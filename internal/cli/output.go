package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/banger-dev/banger/internal/api"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw *tabwriter.Writer, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

// mib renders a MiB count compactly: 512M, 2G.
func mib(n int64) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dG", n/1024)
	}
	return fmt.Sprintf("%dM", n)
}

// ago renders how long ago t was, the way `docker ps` does.
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	default:
		return plural(int(d.Hours()/24), "day") + " ago"
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func printVM(w io.Writer, v api.VM) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row(tw, "Name:", v.Name)
	row(tw, "ID:", v.ID)
	row(tw, "State:", v.State)
	if v.Paused != "" {
		row(tw, "Paused:", v.Paused)
	}
	if v.LastError != "" {
		row(tw, "Last error:", v.LastError)
	}
	if v.ImageID != "" {
		row(tw, "Image:", v.Image+" ("+shortID(v.ImageID)+")")
	} else {
		row(tw, "Image:", v.Image)
	}
	row(tw, "vCPUs:", v.VCPUs)
	row(tw, "Memory:", mib(v.MemoryMiB))
	row(tw, "Work disk:", mib(v.DiskMiB))
	row(tw, "Network:", v.Network)
	if v.IP != "" {
		row(tw, "IP:", v.IP)
	}
	if len(v.Publish) > 0 {
		row(tw, "Ports:", strings.Join(v.Publish, ", "))
	}
	if v.Network != "none" {
		row(tw, "MAC:", v.MAC)
	}
	row(tw, "Driver:", v.Driver)
	row(tw, "Directory:", v.Dir)
	row(tw, "Created:", v.CreatedAt.Local().Format(time.RFC3339)+" ("+ago(v.CreatedAt)+")")
	tw.Flush()
}

// addressOf is how a VM is reached, in a word or two.
func addressOf(v api.VM) string {
	if v.IP == "" {
		return "network " + v.Network
	}
	return "ip " + v.IP
}

func printOp(w io.Writer, o api.Operation) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row(tw, "ID:", o.ID)
	row(tw, "Kind:", o.Kind)
	row(tw, "Target:", o.Target)
	row(tw, "State:", o.State)
	row(tw, "Phase:", o.Phase)
	if o.Total > 0 {
		row(tw, "Progress:", fmt.Sprintf("%d/%d", o.Done, o.Total))
	}
	if o.Error != "" {
		row(tw, "Error:", o.Error)
	}
	row(tw, "Started:", o.CreatedAt.Local().Format(time.RFC3339))
	if o.FinishedAt != nil {
		row(tw, "Finished:", o.FinishedAt.Local().Format(time.RFC3339)+" (took "+o.FinishedAt.Sub(o.CreatedAt).Round(time.Millisecond).String()+")")
	}
	tw.Flush()
}

// warn prints the daemon's warnings on stderr.
func (a *app) warn(warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(a.streams.Err, "banger: warning: %s\n", w)
	}
}
