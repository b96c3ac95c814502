package zenklav

import "sync"

// Routes finds what serves each connection's messages as the connections stand when asked:
// connections are added, changed, disabled and removed while zenklav runs (the connections
// store), so a role that consumes them looks its route up per message, not once at start.
type Routes[R any] struct {
	// Find returns the route of a connection served now; false for one that is not (never
	// was, or was removed or disabled).
	Find func(id string) (R, bool)

	mu   sync.Mutex
	last map[string]R
}

// StaticRoutes are routes that never change (tests, and tools that run once).
func StaticRoutes[R any](routes map[string]R) *Routes[R] {
	return &Routes[R]{Find: func(id string) (R, bool) {
		r, ok := routes[id]
		return r, ok
	}}
}

// Current returns the connection's route now. A message read for a connection that is not
// served is not lost: the caller dead-letters it, and a replay sends it once it is back.
func (r *Routes[R]) Current(id string) (R, bool) {
	route, ok := r.Find(id)
	if ok {
		r.mu.Lock()
		if r.last == nil {
			r.last = map[string]R{}
		}
		r.last[id] = route
		r.mu.Unlock()
	}
	return route, ok
}

// Last returns the connection's route now or, for one no longer served, the last route it
// had: the messages of a removed connection already under way finish with it.
func (r *Routes[R]) Last(id string) (R, bool) {
	if route, ok := r.Current(id); ok {
		return route, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	route, ok := r.last[id]
	return route, ok
}
