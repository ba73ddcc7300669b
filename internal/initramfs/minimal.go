package initramfs

import (
	"fmt"
	"io"
	"os"
)

// BuildMinimal writes a newc cpio archive (uncompressed) holding only
// /init (the agent at agentPath) and the directories and console device
// every archive has: no modules. It is what the KVM probe boots; the agent
// sees banger.probe=1 on the command line, prints its marker and powers
// off.
func BuildMinimal(w io.Writer, agentPath string) error {
	cw, err := writeBase(w, agentPath)
	if err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("writing the initramfs: %w", err)
	}
	return nil
}

// writeBase starts every archive: the directories, the console device and
// the agent as /init.
func writeBase(w io.Writer, agentPath string) (*cpioWriter, error) {
	agent, err := os.Open(agentPath)
	if err != nil {
		return nil, fmt.Errorf("opening the agent binary: %w", err)
	}
	defer agent.Close()
	st, err := agent.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening the agent binary: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("agent binary %s is not a regular file", agentPath)
	}
	cw := newCPIOWriter(w)
	for _, d := range dirs {
		cw.Dir(d.name, d.perm)
	}
	cw.CharDev("dev/console", 0o600, 5, 1)
	cw.File("init", 0o755, st.Size(), agent)
	return cw, nil
}
