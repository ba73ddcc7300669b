// Package config reads bangerd's optional TOML config file and supplies the
// defaults for every key. README.md documents each key; keep them in step.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/banger-dev/banger/internal/model"
)

// File is the config file's shape; zero fields take their defaults.
type File struct {
	SocketGroup   string `toml:"socket_group"`
	Subnet        string `toml:"subnet"`
	DefaultImage  string `toml:"default_image"`
	DefaultVCPUs  int    `toml:"default_vcpus"`
	DefaultMemory string `toml:"default_memory"`
	DefaultDisk   string `toml:"default_disk"`
	StopTimeout   string `toml:"stop_timeout"`
	OpRetention   string `toml:"op_retention"`
	LogLevel      string `toml:"log_level"`

	Bridge         string   `toml:"bridge"`
	VMM            string   `toml:"vmm"`
	OverlaySize    string   `toml:"overlay_size"`
	BootTimeout    string   `toml:"boot_timeout"`
	DebianMirror   string   `toml:"debian_mirror"`
	DebianPackages []string `toml:"debian_packages"`
	ImageCacheDir  string   `toml:"image_cache_dir"`

	FirecrackerBinary string `toml:"firecracker_binary"`
	Jailer            bool   `toml:"jailer"`
	JailerBinary      string `toml:"jailer_binary"`
	JailerUID         int    `toml:"jailer_uid"`
	JailerGID         int    `toml:"jailer_gid"`
	JailerChrootBase  string `toml:"jailer_chroot_base"`
}

// Defaults are the values used for keys the file leaves out.
var Defaults = File{
	SocketGroup:   "banger",
	Subnet:        model.DefaultSubnetStr,
	DefaultImage:  "debian-12",
	DefaultVCPUs:  2,
	DefaultMemory: "1G",
	DefaultDisk:   "8G",
	StopTimeout:   "15s",
	OpRetention:   "1h",
	LogLevel:      "info",
	Bridge:        model.DefaultBridge,
	VMM:           "auto",
	OverlaySize:   "8G",
	BootTimeout:   "180s",
	DebianMirror:  model.DefaultDebianMirror,

	FirecrackerBinary: "firecracker",
	JailerBinary:      "jailer",
	JailerUID:         65534,
	JailerGID:         65534,
	JailerChrootBase:  "/srv/jailer",
}

// Config is the parsed, validated configuration.
type Config struct {
	SocketGroup      string
	Subnet           netip.Prefix
	DefaultImage     string
	DefaultVCPUs     int
	DefaultMemoryMiB int64
	DefaultDiskMiB   int64
	StopTimeout      time.Duration
	OpRetention      time.Duration
	LogLevel         slog.Level
	Bridge           string
	VMM              string
	OverlayMiB       int64
	BootTimeout      time.Duration
	DebianMirror     string
	DebianPackages   []string
	// ImageCacheDir is empty for <state-dir>/cache.
	ImageCacheDir string

	FirecrackerBinary string
	Jailer            bool
	JailerBinary      string
	JailerUID         int
	JailerGID         int
	JailerChrootBase  string
}

// Load reads path. A missing file is not an error unless required (the user
// named it explicitly); every key is checked and unknown keys are refused so
// a typo never passes silently.
func Load(path string, required bool) (Config, error) {
	f := Defaults
	md, err := toml.DecodeFile(path, &f)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !required:
		f = Defaults
	case err != nil:
		return Config{}, fmt.Errorf("reading config %s: %w", path, err)
	default:
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return Config{}, fmt.Errorf("config %s: unknown key(s) %s; see README.md for the keys banger reads", path, strings.Join(keys, ", "))
		}
	}
	c, err := f.parse()
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (f File) parse() (Config, error) {
	c := Config{SocketGroup: f.SocketGroup, DefaultImage: f.DefaultImage, DefaultVCPUs: f.DefaultVCPUs,
		Bridge: f.Bridge, VMM: f.VMM, DebianMirror: f.DebianMirror, DebianPackages: f.DebianPackages, ImageCacheDir: f.ImageCacheDir,
		FirecrackerBinary: f.FirecrackerBinary, Jailer: f.Jailer, JailerBinary: f.JailerBinary,
		JailerUID: f.JailerUID, JailerGID: f.JailerGID, JailerChrootBase: f.JailerChrootBase}
	var err error
	if c.Subnet, err = netip.ParsePrefix(f.Subnet); err != nil {
		return Config{}, fmt.Errorf("subnet %q is not an IPv4 CIDR such as %s", f.Subnet, model.DefaultSubnetStr)
	}
	c.Subnet = c.Subnet.Masked()
	if err := model.ValidateSubnet(c.Subnet); err != nil {
		return Config{}, err
	}
	if err := model.ValidateImageRef(c.DefaultImage); err != nil {
		return Config{}, fmt.Errorf("default_image: %w", err)
	}
	if err := model.ValidateVCPUs(c.DefaultVCPUs); err != nil {
		return Config{}, fmt.Errorf("default_vcpus: %w", err)
	}
	if c.DefaultMemoryMiB, err = model.ParseSize("default_memory", f.DefaultMemory); err != nil {
		return Config{}, err
	}
	if err := model.ValidateMemory(c.DefaultMemoryMiB, 0); err != nil {
		return Config{}, fmt.Errorf("default_memory: %w", err)
	}
	if c.DefaultDiskMiB, err = model.ParseSize("default_disk", f.DefaultDisk); err != nil {
		return Config{}, err
	}
	if err := model.ValidateDisk(c.DefaultDiskMiB); err != nil {
		return Config{}, fmt.Errorf("default_disk: %w", err)
	}
	if c.StopTimeout, err = positiveDuration("stop_timeout", f.StopTimeout); err != nil {
		return Config{}, err
	}
	if c.OpRetention, err = positiveDuration("op_retention", f.OpRetention); err != nil {
		return Config{}, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return Config{}, fmt.Errorf("log_level %q: use debug, info, warn or error", f.LogLevel)
	}
	if err := model.ValidateName(c.Bridge); err != nil || len(c.Bridge) > 15 {
		return Config{}, fmt.Errorf("bridge %q: use up to 15 lowercase letters, digits or '-'", f.Bridge)
	}
	switch c.VMM {
	case "auto", "qemu", "firecracker":
	default:
		return Config{}, fmt.Errorf("vmm %q: use auto, firecracker or qemu", f.VMM)
	}
	if c.Jailer && (c.JailerUID <= 0 || c.JailerGID <= 0) {
		return Config{}, fmt.Errorf("jailer_uid and jailer_gid must name an unprivileged user and group (not root)")
	}
	if c.Jailer && !filepath.IsAbs(c.JailerChrootBase) {
		return Config{}, fmt.Errorf("jailer_chroot_base %q must be an absolute path", c.JailerChrootBase)
	}
	if c.OverlayMiB, err = model.ParseSize("overlay_size", f.OverlaySize); err != nil {
		return Config{}, err
	}
	if err := model.ValidateDisk(c.OverlayMiB); err != nil {
		return Config{}, fmt.Errorf("overlay_size: %w", err)
	}
	if c.BootTimeout, err = positiveDuration("boot_timeout", f.BootTimeout); err != nil {
		return Config{}, err
	}
	for _, p := range c.DebianPackages {
		if p == "" || strings.ContainsAny(p, " \t\n,;") || strings.HasPrefix(p, "-") {
			return Config{}, fmt.Errorf("debian_packages: %q is not a package name", p)
		}
	}
	return c, nil
}

func positiveDuration(key, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive duration such as 15s or 1h", key, s)
	}
	return d, nil
}

// GroupID looks up the socket group. ok is false when the group does not
// exist on this host; then only root and the daemon's own user are allowed.
func GroupID(name string) (gid uint32, ok bool) {
	if name == "" {
		return 0, false
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(id), true
}
