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
	"reflect"
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
	DefaultMemory Size   `toml:"default_memory"`
	DefaultDisk   Size   `toml:"default_disk"`
	StopTimeout   string `toml:"stop_timeout"`
	OpRetention   string `toml:"op_retention"`
	LogLevel      string `toml:"log_level"`

	Bridge         string   `toml:"bridge"`
	IsolateVMs     bool     `toml:"isolate_vms"`
	VMM            string   `toml:"vmm"`
	OverlaySize    Size     `toml:"overlay_size"`
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
	// IsolateVMs keeps bridge VMs from reaching each other (they still
	// reach the host, published ports and, through NAT, the outside).
	IsolateVMs     bool
	VMM            string
	OverlayMiB     int64
	BootTimeout    time.Duration
	DebianMirror   string
	DebianPackages []string
	// ImageCacheDir is empty for <state-dir>/cache.
	ImageCacheDir string

	FirecrackerBinary string
	Jailer            bool
	JailerBinary      string
	JailerUID         int
	JailerGID         int
	JailerChrootBase  string
}

// Size is a size as the user wrote it: a string ("2G", "512M") or a bare
// number of MiB (2048), as README promises.
type Size string

// UnmarshalTOML accepts a string or a number.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*s = Size(x)
	case int64:
		*s = Size(strconv.FormatInt(x, 10))
	case float64:
		*s = Size(strconv.FormatFloat(x, 'f', -1, 64))
	default:
		return fmt.Errorf("a size must be a string such as \"2G\" or a number of MiB, not %T", v)
	}
	return nil
}

// suggestKey is the known key closest to an unknown one, if any is close.
func suggestKey(unknown string) string {
	best, bestD := "", 4
	t := reflect.TypeOf(File{})
	for i := 0; i < t.NumField(); i++ {
		k := t.Field(i).Tag.Get("toml")
		if d := editDistance(unknown, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
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
			msg := fmt.Sprintf("config %s: unknown key(s) %s", path, strings.Join(keys, ", "))
			if s := suggestKey(keys[0]); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			return Config{}, errors.New(msg + "; see README.md for the keys banger reads")
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
		Bridge: f.Bridge, IsolateVMs: f.IsolateVMs, VMM: f.VMM, DebianMirror: f.DebianMirror, DebianPackages: f.DebianPackages, ImageCacheDir: f.ImageCacheDir,
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
	if c.DefaultMemoryMiB, err = model.ParseSize("default_memory", string(f.DefaultMemory)); err != nil {
		return Config{}, err
	}
	if err := model.ValidateMemory(c.DefaultMemoryMiB, 0); err != nil {
		return Config{}, fmt.Errorf("default_memory: %w", err)
	}
	if c.DefaultDiskMiB, err = model.ParseSize("default_disk", string(f.DefaultDisk)); err != nil {
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
	if c.OverlayMiB, err = model.ParseSize("overlay_size", string(f.OverlaySize)); err != nil {
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

// Changes are the keys whose values differ between two configurations,
// split by whether a running daemon can take them at once (the defaults
// of new VMs, timeouts, logging) or only at its next start (the host's
// network, the VMM, images' sources and where things live).
type Changes struct {
	Live, Restart []string
}

// Diff compares the configuration a daemon runs with and a newly read one.
func Diff(old, cur Config) Changes {
	var c Changes
	for _, k := range []struct {
		key     string
		changed bool
	}{
		{"default_image", old.DefaultImage != cur.DefaultImage},
		{"default_vcpus", old.DefaultVCPUs != cur.DefaultVCPUs},
		{"default_memory", old.DefaultMemoryMiB != cur.DefaultMemoryMiB},
		{"default_disk", old.DefaultDiskMiB != cur.DefaultDiskMiB},
		{"stop_timeout", old.StopTimeout != cur.StopTimeout},
		{"op_retention", old.OpRetention != cur.OpRetention},
		{"log_level", old.LogLevel != cur.LogLevel},
	} {
		if k.changed {
			c.Live = append(c.Live, k.key)
		}
	}
	for _, k := range []struct {
		key     string
		changed bool
	}{
		{"socket_group", old.SocketGroup != cur.SocketGroup},
		{"subnet", old.Subnet != cur.Subnet},
		{"bridge", old.Bridge != cur.Bridge},
		{"isolate_vms", old.IsolateVMs != cur.IsolateVMs},
		{"vmm", old.VMM != cur.VMM},
		{"overlay_size", old.OverlayMiB != cur.OverlayMiB},
		{"boot_timeout", old.BootTimeout != cur.BootTimeout},
		{"debian_mirror", old.DebianMirror != cur.DebianMirror},
		{"debian_packages", strings.Join(old.DebianPackages, "\x00") != strings.Join(cur.DebianPackages, "\x00")},
		{"image_cache_dir", old.ImageCacheDir != cur.ImageCacheDir},
		{"firecracker_binary", old.FirecrackerBinary != cur.FirecrackerBinary},
		{"jailer", old.Jailer != cur.Jailer},
		{"jailer_binary", old.JailerBinary != cur.JailerBinary},
		{"jailer_uid", old.JailerUID != cur.JailerUID},
		{"jailer_gid", old.JailerGID != cur.JailerGID},
		{"jailer_chroot_base", old.JailerChrootBase != cur.JailerChrootBase},
	} {
		if k.changed {
			c.Restart = append(c.Restart, k.key)
		}
	}
	return c
}
