package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// orderFile lists the initramfs's modules, dependencies first (written by
// internal/initramfs).
const orderFile = "/lib/modules/banger.order"

// loadModules loads the initramfs's modules in order. A module that fails
// is logged and skipped: if it mattered, finding the disks or the network
// fails next with a clearer message.
func (b *boot) loadModules() error {
	data, err := os.ReadFile(orderFile)
	if errors.Is(err, fs.ErrNotExist) {
		b.log.Printf("no %s: loading no modules", orderFile)
		return nil
	}
	if err != nil {
		return err
	}
	loaded := 0
	for _, p := range strings.Fields(string(data)) {
		switch err := loadModule(p); {
		case err == nil:
			loaded++
		case errors.Is(err, unix.EEXIST):
		default:
			b.log.Printf("%v", err)
		}
	}
	b.log.Printf("loaded %d modules", loaded)
	return nil
}

// loadModule loads one module file with finit_module. Compressed modules
// are decompressed by the kernel (CONFIG_MODULE_DECOMPRESS).
func loadModule(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening module %s: %w", p, err)
	}
	defer unix.Close(fd)
	flags := 0
	if compressed(p) {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(fd, "", flags); err != nil {
		return fmt.Errorf("loading module %s: %w", p, err)
	}
	return nil
}

func compressed(p string) bool {
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}
