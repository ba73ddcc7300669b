package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/bundle"
	"github.com/banger-dev/banger/internal/client"
)

// bundleKind says whether a pull's argument names a bundle: "-" (standard
// input), an http(s) URL, or an existing file given as a path (with a
// slash) or named *.tar.zst. Anything else is an image reference.
func bundleKind(arg string) string {
	switch {
	case arg == "-":
		return "stdin"
	case strings.HasPrefix(arg, "https://"), strings.HasPrefix(arg, "http://"):
		return "url"
	case strings.ContainsRune(arg, '/') || strings.HasSuffix(arg, ".tar.zst"):
		if fi, err := os.Stat(arg); err == nil && fi.Mode().IsRegular() {
			return "file"
		}
	}
	return ""
}

// pullBundle loads a bundle from a file, standard input or a URL (the
// download resumes where an earlier one broke off) as image as, or under
// the name its manifest gives. The daemon checks every file; wantSum,
// when given (a catalog entry's), is the whole file's sha256, checked
// here before anything is sent.
func (a *app) pullBundle(ctx context.Context, c *client.Client, arg, as, wantSum string, insecure, detach bool) (api.Operation, error) {
	var in io.Reader
	downloaded := ""
	switch bundleKind(arg) {
	case "stdin":
		in = a.streams.In
	case "url":
		p, err := a.download(ctx, arg, insecure)
		if err != nil {
			return api.Operation{}, err
		}
		downloaded = p
		fallthrough
	case "file":
		p := arg
		if downloaded != "" {
			p = downloaded
		}
		f, err := os.Open(p)
		if err != nil {
			return api.Operation{}, fmt.Errorf("opening the bundle: %w", err)
		}
		defer f.Close()
		if wantSum != "" {
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return api.Operation{}, fmt.Errorf("reading the bundle: %w", err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != wantSum {
				a.dropDownload(downloaded, true)
				return api.Operation{}, fmt.Errorf("the bundle at %s has sha256 %s, but the catalog says %s: it changed or is corrupt; nothing was loaded", arg, got, wantSum)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return api.Operation{}, fmt.Errorf("reading the bundle: %w", err)
			}
		}
		in = f
	}
	// The manifest names the image; what peeking read is sent again.
	var seen bytes.Buffer
	m, err := bundle.Peek(io.TeeReader(in, &seen))
	if err != nil {
		a.dropDownload(downloaded, true)
		return api.Operation{}, fmt.Errorf("%s: %w", arg, err)
	}
	name := as
	if name == "" {
		name = m.Name
	}
	o, err := c.ImageLoad(ctx, io.MultiReader(&seen, in), name)
	if err != nil {
		var rerr *client.Error
		a.dropDownload(downloaded, errors.As(err, &rerr) && rerr.Code == api.CodeInvalidArgument)
		return api.Operation{}, err
	}
	// The daemon holds every file now (and checked them); the download has
	// done its work.
	a.dropDownload(downloaded, true)
	if detach {
		fmt.Fprintln(a.streams.Out, o.ID)
		return o, nil
	}
	return a.waitOp(ctx, c, o, "loading image "+name)
}

// dropDownload removes a downloaded bundle the daemon refused as corrupt
// (the next pull starts over) or no longer needs.
func (a *app) dropDownload(p string, drop bool) {
	if p != "" && drop {
		_ = os.Remove(p)
	}
}

// download fetches a bundle into the user's cache and returns its path.
// A part left by a download that broke off is resumed with a range
// request; a server that ignores ranges restarts it.
func (a *app) download(ctx context.Context, raw string, insecure bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bundle URL %q is not a URL", raw)
	}
	if u.Scheme == "http" && !insecure && !isLoopbackHost(u.Hostname()) {
		return "", fmt.Errorf("plain HTTP to %s: a bundle's checksums catch corruption, not a change made on the way; use https, or pass --insecure", u.Host)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding your cache directory: %w", err)
	}
	dir := filepath.Join(base, "banger", "bundles")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	sum := sha256.Sum256([]byte(raw))
	part := filepath.Join(dir, hex.EncodeToString(sum[:8])+".tar.zst.part")
	for attempt := 0; ; attempt++ {
		done, err := a.fetchPart(ctx, raw, part)
		if err != nil || done {
			return part, err
		}
		if attempt > 0 {
			return "", fmt.Errorf("downloading %s: the server refuses to resume and to restart", raw)
		}
		_ = os.Remove(part) // a range the server cannot serve: start over
	}
}

// fetchPart appends the rest of raw to part; false without error means
// the server could not serve the range asked for.
func (a *app) fetchPart(ctx context.Context, raw, part string) (bool, error) {
	var have int64
	if fi, err := os.Stat(part); err == nil {
		have = fi.Size()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return false, fmt.Errorf("bundle URL %q: %w", raw, err)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := (&http.Client{Timeout: 0}).Do(req)
	if err != nil {
		return false, fmt.Errorf("downloading %s: %w", raw, err)
	}
	defer resp.Body.Close()
	total := int64(-1)
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if i := strings.LastIndexByte(cr, '/'); i >= 0 {
				total, _ = strconv.ParseInt(cr[i+1:], 10, 64)
			}
			if !strings.HasPrefix(cr, "bytes "+strconv.FormatInt(have, 10)+"-") {
				return false, nil
			}
		}
	case http.StatusOK:
		// The whole file: what was there is replaced.
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		have = 0
		total = resp.ContentLength
	case http.StatusRequestedRangeNotSatisfiable:
		return false, nil
	default:
		return false, fmt.Errorf("downloading %s: %s", raw, resp.Status)
	}
	// Made only now: a refused request leaves no part behind.
	f, err := os.OpenFile(part, flags, 0o600)
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", part, err)
	}
	defer f.Close()
	var w io.Writer = f
	if bar := a.byteBar(total, "downloading "+filepath.Base(raw)); bar != nil {
		_ = bar.Set64(have)
		defer func() { _ = bar.Finish() }()
		w = io.MultiWriter(f, bar)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return false, fmt.Errorf("downloading %s broke off after %s: %w; run the same pull again to resume", raw, bytesStr(have+n), err)
	}
	if total >= 0 && have+n != total {
		return false, fmt.Errorf("downloading %s broke off after %s of %s; run the same pull again to resume", raw, bytesStr(have+n), bytesStr(total))
	}
	return true, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
