package vm

import "sync"

// lockSet hands out one mutex per VM ID, dropping each when nobody holds or
// waits for it so the set does not grow with every VM ever made.
type lockSet struct {
	mu sync.Mutex
	m  map[string]*refLock
}

type refLock struct {
	sync.Mutex
	refs int
}

// Lock locks id and returns the unlock function.
func (l *lockSet) Lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*refLock{}
	}
	rl := l.m[id]
	if rl == nil {
		rl = &refLock{}
		l.m[id] = rl
	}
	rl.refs++
	l.mu.Unlock()

	rl.Lock()
	var once sync.Once
	return func() {
		once.Do(func() {
			rl.Unlock()
			l.mu.Lock()
			rl.refs--
			if rl.refs == 0 {
				delete(l.m, id)
			}
			l.mu.Unlock()
		})
	}
}

// TryLock locks id if nobody holds it. Tests use it to prove a lock is free.
func (l *lockSet) TryLock(id string) (unlock func(), ok bool) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*refLock{}
	}
	rl := l.m[id]
	if rl == nil {
		rl = &refLock{}
		l.m[id] = rl
	}
	if !rl.TryLock() {
		if rl.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
		return nil, false
	}
	rl.refs++
	l.mu.Unlock()
	return func() {
		rl.Unlock()
		l.mu.Lock()
		rl.refs--
		if rl.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}, true
}
