package wsstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Command is the agent subcommand that unpacks a stream.
const Command = "workspace-unpack"

// Main runs `banger-agent workspace-unpack [--format F] [--readonly]
// [--workers N] DIR` on stdin. (An agent older than the command exits 2
// with its usage; this one exits 1 on every failure.)
func Main(ctx context.Context, args []string, stdin io.Reader) error {
	o := UnpackOptions{Format: "sha1"}
	for len(args) > 1 {
		switch {
		case args[0] == "--readonly":
			o.ReadOnly = true
			args = args[1:]
		case args[0] == "--workers" && len(args) > 2:
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("%s: bad --workers %q", Command, args[1])
			}
			o.Workers = n
			args = args[2:]
		case args[0] == "--format" && len(args) > 2:
			o.Format = args[1]
			args = args[2:]
		default:
			return fmt.Errorf("%s: unknown option %q", Command, args[0])
		}
	}
	if len(args) != 1 {
		return errors.New("usage: " + Command + " [--format sha1|sha256] [--readonly] [--workers N] DIR")
	}
	return Unpack(ctx, stdin, args[0], o)
}
