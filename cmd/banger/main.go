// Command banger is the banger CLI. See internal/cli.
package main

import (
	"context"
	"os"

	"golang.org/x/term"

	"github.com/banger-dev/banger/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], cli.Streams{
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		ErrIsTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	}, version))
}
