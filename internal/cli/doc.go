// Package cli is the banger command line: cobra commands, one file per
// verb, each a thin shell over one client call. It imports only the API
// and client packages, holds no package-level state, and maps failures to
// exit codes: 1 for errors, 2 for usage errors.
package cli
