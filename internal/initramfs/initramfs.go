// Package initramfs builds the initramfs banger boots every guest with: the
// agent as /init, the kernel modules the guest needs to reach its disks,
// network, console and control channel (with their dependencies, in load
// order), and the few directories and device nodes /init expects.
package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Needed are the modules the guest needs to reach its disks, network,
// console and control channel; built-in ones are skipped.
var Needed = []string{"virtio_mmio", "virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "virtio_balloon", "overlay", "vmw_vsock_virtio_transport"}

// OrderFile is where the archive lists its modules, one absolute path a
// line, dependencies first: the agent loads them in that order.
const OrderFile = "/lib/modules/banger.order"

// dirs are created in every archive; the agent mounts on them.
var dirs = []struct {
	name string
	perm uint32
}{
	{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755}, {"tmp", 0o1777},
	{"newroot", 0o755}, {"lower", 0o755}, {"upperfs", 0o755}, {"lib/modules", 0o755},
}

// Build writes a newc cpio archive (uncompressed) holding /init (the agent
// at agentPath), the modules of Needed and their dependency closure from
// modulesDir (a copy of the guest's /lib/modules/<kver>, with modules.dep
// and modules.builtin), and OrderFile. Modules compressed with gzip are
// stored decompressed; .ko.xz and .ko.zst are stored as they are and the
// agent asks the kernel to decompress them (CONFIG_MODULE_DECOMPRESS).
func Build(ctx context.Context, w io.Writer, agentPath, modulesDir string) error {
	mods, err := resolve(modulesDir, Needed)
	if err != nil {
		return err
	}
	cw, err := writeBase(w, agentPath)
	if err != nil {
		return err
	}

	var order strings.Builder
	for _, rel := range mods {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, name, err := readModule(modulesDir, rel)
		if err != nil {
			return err
		}
		cw.File(name, 0o644, int64(len(data)), bytes.NewReader(data))
		order.WriteString("/" + name + "\n")
	}
	cw.File(OrderFile, 0o644, int64(order.Len()), strings.NewReader(order.String()))
	if err := cw.Close(); err != nil {
		return fmt.Errorf("writing the initramfs: %w", err)
	}
	return nil
}

// readModule returns a module's bytes and its name in the archive
// (lib/modules/<path in modules.dep>), decompressing gzip.
//
// modules.dep comes from the image, so its paths are confined to the
// modules directory: "../" and symlinks leading out of it are refused
// rather than letting an image copy host files into a guest.
func readModule(modulesDir, rel string) ([]byte, string, error) {
	root, err := os.OpenRoot(modulesDir)
	if err != nil {
		return nil, "", fmt.Errorf("opening modules directory: %w", err)
	}
	defer root.Close()
	data, err := root.ReadFile(filepath.FromSlash(rel))
	if err != nil {
		return nil, "", fmt.Errorf("reading module %s: %w", rel, err)
	}
	name := path.Join("lib/modules", rel)
	if strings.HasSuffix(rel, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, "", fmt.Errorf("decompressing module %s: %w", rel, err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return nil, "", fmt.Errorf("decompressing module %s: %w", rel, err)
		}
		name = strings.TrimSuffix(name, ".gz")
	}
	return data, name, nil
}

// moduleName is the kernel's name for a module file: the base name without
// .ko and compression suffix, dashes as underscores (virtio-rng.ko is
// virtio_rng).
func moduleName(p string) string {
	base := path.Base(filepath.ToSlash(p))
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// resolve returns the modules.dep paths (relative to modulesDir) of names
// and everything they depend on, dependencies first. Built-in modules are
// skipped; a name that is neither in modules.dep nor built in is an error.
func resolve(modulesDir string, names []string) ([]string, error) {
	deps, paths, err := readModulesDep(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(modulesDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("modules.dep has a dependency cycle: %s", strings.Join(append(chain, name), " → "))
		}
		p, ok := paths[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			if len(chain) == 0 {
				return fmt.Errorf("module %s is neither in %s/modules.dep nor built into the kernel", name, modulesDir)
			}
			return fmt.Errorf("module %s (needed by %s) is neither in %s/modules.dep nor built into the kernel", name, chain[len(chain)-1], modulesDir)
		}
		state[name] = 1
		next := append(chain[:len(chain):len(chain)], name)
		for _, d := range deps[name] {
			if err := visit(d, next); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(strings.ReplaceAll(n, "-", "_"), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// readModulesDep parses modules.dep ("path: dep dep ...") into each
// module's dependency names and each module's path relative to the
// modules directory.
func readModulesDep(file string) (deps map[string][]string, paths map[string]string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	defer f.Close()
	deps, paths = map[string][]string{}, map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(text, ":")
		if !ok {
			return nil, nil, fmt.Errorf("modules.dep line %d has no colon: %q", line, text)
		}
		name := moduleName(mod)
		paths[name] = relPath(mod)
		for _, d := range strings.Fields(rest) {
			deps[name] = append(deps[name], moduleName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return deps, paths, nil
}

// relPath makes a modules.dep path relative to the modules directory; old
// depmods wrote absolute /lib/modules/<kver>/... paths.
func relPath(p string) string {
	p = filepath.ToSlash(p)
	if _, after, ok := strings.Cut(p, "/lib/modules/"); ok && path.IsAbs(p) {
		if _, rest, ok := strings.Cut(after, "/"); ok {
			return rest
		}
	}
	return strings.TrimPrefix(path.Clean(p), "/")
}

// readBuiltin returns the names of modules built into the kernel. A
// missing modules.builtin means none.
func readBuiltin(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading modules.builtin: %w", err)
	}
	builtin := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			builtin[moduleName(line)] = true
		}
	}
	return builtin, nil
}
