package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/guest"
)

// disks are the device paths of the VM's disks, told apart by content.
type disks struct {
	config string // starts with guest.ConfigMagic
	upper  string // ext4 labelled guest.LabelUpper: the overlay's writable layer
	work   string // ext4 labelled guest.LabelWork, mounted at /work; optional
	base   string // the remaining disk: the read-only image
}

// diskWait is how long findDisks waits for the disks to appear.
const diskWait = 10 * time.Second

func (b *boot) findDisks() error {
	d, cfg, err := waitDisks("/sys/block", "/dev", diskWait)
	if err != nil {
		return err
	}
	b.disks, b.cfg = d, cfg
	b.log.Printf("disks: base %s, upper %s, work %s, config %s", d.base, d.upper, orNone(d.work), d.config)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// waitDisks classifies the disks until the config, upper and base disks
// are all there, or timeout passes.
func waitDisks(sysBlock, devDir string, timeout time.Duration) (disks, guest.Config, error) {
	deadline := time.Now().Add(timeout)
	for {
		d, cfg, err := classifyDisks(sysBlock, devDir)
		if err == nil || time.Now().After(deadline) {
			return d, cfg, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// classifyDisks tells the virtio disks (sysBlock/vd*, opened as
// devDir/vd*) apart by what is on them, never by their order.
func classifyDisks(sysBlock, devDir string) (disks, guest.Config, error) {
	names, err := filepath.Glob(filepath.Join(sysBlock, "vd*"))
	if err != nil {
		return disks{}, guest.Config{}, err
	}
	sort.Strings(names)
	var d disks
	var cfg guest.Config
	var others, seen []string
	set := func(slot *string, dev, what string) error {
		if *slot != "" {
			return fmt.Errorf("two %s disks: %s and %s", what, *slot, dev)
		}
		*slot = dev
		return nil
	}
	for _, n := range names {
		dev := filepath.Join(devDir, filepath.Base(n))
		seen = append(seen, filepath.Base(n))
		kind, c, err := probeDisk(dev)
		if err != nil {
			return d, cfg, err
		}
		switch kind {
		case "config":
			cfg = c
			err = set(&d.config, dev, "config")
		case guest.LabelUpper:
			err = set(&d.upper, dev, guest.LabelUpper)
		case guest.LabelWork:
			err = set(&d.work, dev, guest.LabelWork)
		default:
			others = append(others, dev)
		}
		if err != nil {
			return d, cfg, err
		}
	}
	if len(others) > 1 {
		return d, cfg, fmt.Errorf("more than one disk could be the base image: %s", strings.Join(others, ", "))
	}
	if len(others) == 1 {
		d.base = others[0]
	}
	var missing []string
	if d.config == "" {
		missing = append(missing, "the config disk")
	}
	if d.upper == "" {
		missing = append(missing, "the disk labelled "+guest.LabelUpper)
	}
	if d.base == "" {
		missing = append(missing, "the base image disk")
	}
	if len(missing) > 0 {
		return d, cfg, fmt.Errorf("missing %s (disks seen: %s)", strings.Join(missing, ", "), orNone(strings.Join(seen, " ")))
	}
	return d, cfg, nil
}

// probeDisk reads the head of a disk: "config" (with the decoded config)
// when it starts with guest.ConfigMagic, else its ext4 label ("" if none).
func probeDisk(dev string) (string, guest.Config, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", guest.Config{}, fmt.Errorf("opening disk: %w", err)
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", guest.Config{}, fmt.Errorf("reading disk %s: %w", dev, err)
	}
	head = head[:n]
	if bytes.HasPrefix(head, []byte(guest.ConfigMagic)) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", guest.Config{}, fmt.Errorf("reading disk %s: %w", dev, err)
		}
		cfg, err := guest.DecodeDisk(f)
		if err != nil {
			return "", guest.Config{}, fmt.Errorf("config disk %s: %w", dev, err)
		}
		return "config", cfg, nil
	}
	label, _ := ext4Label(head)
	return label, guest.Config{}, nil
}

// The ext2/3/4 superblock starts 1024 bytes in; its magic is at 0x38 and
// its 16-byte volume name at 0x78.
const (
	superblockOffset = 1024
	ext4MagicOffset  = superblockOffset + 0x38
	ext4LabelOffset  = superblockOffset + 0x78
	ext4Magic        = 0xEF53
)

// ext4Label returns the volume label of the ext2/3/4 filesystem whose
// first bytes are head, and whether head holds one at all.
func ext4Label(head []byte) (string, bool) {
	if len(head) < ext4LabelOffset+16 || binary.LittleEndian.Uint16(head[ext4MagicOffset:]) != ext4Magic {
		return "", false
	}
	label := head[ext4LabelOffset : ext4LabelOffset+16]
	if i := bytes.IndexByte(label, 0); i >= 0 {
		label = label[:i]
	}
	return string(label), true
}
