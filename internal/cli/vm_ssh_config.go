package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/atomicfile"
	"github.com/banger-dev/banger/internal/client"
)

func (a *app) vmSSHConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh-config [NAME...]",
		Short: "Print an OpenSSH config block for VMs (all running ones without names)",
		Long: "Prints Host blocks that let plain ssh, scp, rsync, git and editors' remote modes\n" +
			"reach VMs as NAME.vm (or NAME), with banger's key and each VM's pinned host key,\n" +
			"which it writes under ~/.cache/banger/ssh/ (mode 0600). Add it to ~/.ssh/config:\n" +
			"  banger vm ssh-config >> ~/.ssh/config",
		Example:           "  banger vm ssh-config dev > ~/.ssh/config.d/banger && ssh dev.vm uname -a",
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				vms, err := c.VMList(ctx)
				if err != nil {
					return err
				}
				for _, v := range vms {
					if v.State == "running" {
						names = append(names, v.Name)
					}
				}
			}
			dir, err := sshConfigDir(c.Socket)
			if err != nil {
				return err
			}
			failed := false
			for _, name := range names {
				if err := a.printSSHConfig(ctx, c, dir, name); err != nil {
					fmt.Fprintf(a.streams.Err, "banger: %s\n", err)
					failed = true
				}
			}
			if failed {
				return quietError{}
			}
			return nil
		},
	}
	return cmd
}

// sshConfigDir is where the key and known-hosts files for one daemon go.
func sshConfigDir(socket string) (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory: %w", err)
	}
	sum := sha256.Sum256([]byte(socket))
	dir := filepath.Join(d, "banger", "ssh", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	return dir, nil
}

func (a *app) printSSHConfig(ctx context.Context, c *client.Client, dir, name string) error {
	v, err := c.VMShow(ctx, name)
	if err != nil {
		return err
	}
	info, err := c.VMSSHInfo(ctx, v.ID)
	if err != nil {
		return err
	}
	key := filepath.Join(dir, "id_ed25519")
	if err := atomicfile.WriteFile(key, []byte(info.PrivateKey), 0o600); err != nil {
		return err
	}
	opts := [][2]string{}
	if info.Tunnel {
		// No network: ssh reaches the guest through `banger vm tunnel`.
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding banger's own path for ProxyCommand: %w", err)
		}
		opts = append(opts, [2]string{"ProxyCommand", shellQuote([]string{exe, "--socket", c.Socket, "vm", "tunnel", v.ID, "22"})})
	} else {
		host, _, err := net.SplitHostPort(info.Address)
		if err != nil {
			return fmt.Errorf("vm %s has no usable address %q", v.Name, info.Address)
		}
		opts = append(opts, [2]string{"HostName", host})
	}
	known := filepath.Join(dir, "known_hosts_"+v.Name)
	if err := atomicfile.WriteFile(known, []byte(v.Name+".vm "+strings.TrimSpace(info.HostKey)+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(a.streams.Out, "Host %s.vm %s\n", v.Name, v.Name)
	for _, kv := range append(opts, [][2]string{
		{"User", info.User}, {"IdentityFile", key}, {"IdentitiesOnly", "yes"},
		{"HostKeyAlias", v.Name + ".vm"}, {"UserKnownHostsFile", known}, {"StrictHostKeyChecking", "yes"},
		{"ServerAliveInterval", "5"}, {"ServerAliveCountMax", "3"},
	}...) {
		val := kv[1]
		if kv[0] != "ProxyCommand" { // the rest of its line is a shell command
			val = quoteSSHValue(val)
		}
		fmt.Fprintf(a.streams.Out, "  %s %s\n", kv[0], val)
	}
	fmt.Fprintln(a.streams.Out)
	return nil
}

// quoteSSHValue quotes a value with spaces, as ssh_config allows.
func quoteSSHValue(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}
