// Package model holds banger's domain types — VMs, images, operations — the
// legal VM state transitions, and the validation of everything a user types
// (names, sizes, counts). It imports only the standard library so every
// other layer can depend on it.
package model
