package model

import "fmt"

// State is where a VM is in its lifecycle.
type State string

// The VM states. Starting and stopping are transitional: a VM in one of them
// has work in flight, and other lifecycle calls are refused until it settles.
const (
	StateCreated  State = "created"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateStopped  State = "stopped"
	StateError    State = "error"
)

// States lists every state, in lifecycle order.
var States = []State{StateCreated, StateStarting, StateRunning, StateStopping, StateStopped, StateError}

// transitions is the single table of legal moves.
var transitions = map[State][]State{
	StateCreated: {StateStarting},
	// A boot ends running, fails (error), or is cancelled (stopped).
	StateStarting: {StateRunning, StateError, StateStopped},
	// Running VMs stop on request, or are found dead (stopped) or broken (error).
	StateRunning:  {StateStopping, StateStopped, StateError},
	StateStopping: {StateStopped, StateError},
	StateStopped:  {StateStarting},
	StateError:    {StateStarting, StateStopped},
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Transitional reports whether work is in flight in state s.
func (s State) Transitional() bool { return s == StateStarting || s == StateStopping }

// Deletable reports whether a VM in state s may be deleted without stopping it.
func (s State) Deletable() bool {
	return s == StateCreated || s == StateStopped || s == StateError
}

// CanTransition reports whether from → to is a legal move.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Transition returns nil when from → to is legal, and an ErrState error that
// says so otherwise.
func Transition(from, to State) error {
	if !from.Valid() {
		return fmt.Errorf("unknown vm state %q: %w", from, ErrState)
	}
	if !to.Valid() {
		return fmt.Errorf("unknown vm state %q: %w", to, ErrState)
	}
	if !CanTransition(from, to) {
		return fmt.Errorf("vm cannot go from %s to %s: %w", from, to, ErrState)
	}
	return nil
}
