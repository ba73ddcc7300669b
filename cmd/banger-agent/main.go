// Command banger-agent is banger's guest agent. As PID 1 it is the /init
// of the initramfs banger generates (see internal/agent); otherwise it runs
// one of its subcommands: serve (the host control channel), exec and kill
// (SSH sessions' commands), workspace-unpack (a workspace prepare's stream)
// or version.
// It is built static (CGO_ENABLED=0): the initramfs holds no libc.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/banger-dev/banger/internal/agent"
	"github.com/banger-dev/banger/internal/wsstream"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if os.Getpid() == 1 {
		agent.ProbeIfAsked() // the KVM probe's payload: never returns when asked for
		agent.Init(version)  // never returns
		return
	}
	if len(os.Args) >= 2 && os.Args[1] == "exec" {
		o, err := agent.ParseExecArgs(os.Args[2:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "banger-agent:", err)
			os.Exit(2)
		}
		os.Exit(agent.Exec(o, os.Stderr))
	}
	if len(os.Args) >= 2 && os.Args[1] == wsstream.Command {
		if err := wsstream.Main(context.Background(), os.Args[2:], os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "banger-agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) == 4 && os.Args[1] == "kill" {
		if err := agent.Kill(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "banger-agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	maintenance := len(os.Args) == 3 && os.Args[1] == "serve" && os.Args[2] == "--maintenance"
	if len(os.Args) != 2 && !maintenance {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		// No signal handling: SIGTERM (systemd's shutdown) ends it at once.
		if err := agent.Serve(context.Background(), version, maintenance); err != nil {
			fmt.Fprintln(os.Stderr, "banger-agent:", err)
			os.Exit(1)
		}
	case "version":
		fmt.Println("banger-agent", version)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: banger-agent serve [--maintenance] | version | exec [--env K=V]... [--workdir D] [--user U] [--token T] -- CMD... | kill TOKEN SIGNAL | workspace-unpack [--format F] [--readonly] DIR\n(as PID 1 it boots the guest: it is the initramfs's /init)")
	os.Exit(2)
}
