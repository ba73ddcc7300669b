package model

import (
	"errors"
	"testing"
)

func TestTransitionTable(t *testing.T) {
	legal := map[[2]State]bool{
		{StateCreated, StateStarting}: true,
		{StateStarting, StateRunning}: true,
		{StateStarting, StateError}:   true,
		{StateStarting, StateStopped}: true,
		{StateRunning, StateStopping}: true,
		{StateRunning, StateStopped}:  true,
		{StateRunning, StateError}:    true,
		{StateStopping, StateStopped}: true,
		{StateStopping, StateError}:   true,
		{StateStopped, StateStarting}: true,
		{StateError, StateStarting}:   true,
		{StateError, StateStopped}:    true,
	}
	// Every pair, legal or not, is checked: each illegal one must be refused
	// with ErrState.
	for _, from := range States {
		for _, to := range States {
			err := Transition(from, to)
			if legal[[2]State{from, to}] {
				if err != nil {
					t.Errorf("%s -> %s: want legal, got %v", from, to, err)
				}
				continue
			}
			if !errors.Is(err, ErrState) {
				t.Errorf("%s -> %s: want ErrState, got %v", from, to, err)
			}
		}
	}
}

func TestTransitionUnknownState(t *testing.T) {
	if err := Transition("bogus", StateRunning); !errors.Is(err, ErrState) {
		t.Fatalf("want ErrState for unknown from-state, got %v", err)
	}
	if err := Transition(StateStopped, "bogus"); !errors.Is(err, ErrState) {
		t.Fatalf("want ErrState for unknown to-state, got %v", err)
	}
}

func TestDeletableAndTransitional(t *testing.T) {
	for _, s := range States {
		wantDel := s == StateCreated || s == StateStopped || s == StateError
		if s.Deletable() != wantDel {
			t.Errorf("%s.Deletable() = %v", s, s.Deletable())
		}
		wantTr := s == StateStarting || s == StateStopping
		if s.Transitional() != wantTr {
			t.Errorf("%s.Transitional() = %v", s, s.Transitional())
		}
	}
}
