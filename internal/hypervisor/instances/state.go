package instances

import (
	"fmt"
	"slices"
	"strings"
)

// State is an instance's lifecycle state; the legal hops are the table below.
type State string

const (
	Stopped  State = "Stopped"  // no VMM, no snapshot
	Created  State = "Created"  // VMM up, guest not booted
	Running  State = "Running"  // guest running
	Paused   State = "Paused"   // guest paused in a live VMM
	Shutdown State = "Shutdown" // VMM up, guest powered off
	Standby  State = "Standby"  // no VMM, snapshot on disk
	Unknown  State = "Unknown"  // observed only: the VMM does not answer sensibly
)

// Settable are the states a user can ask for.
var Settable = []State{Running, Paused, Standby, Stopped}

// hops is the single-hop transition table; every flow moves along these edges.
var hops = map[State][]State{
	Stopped:  {Created},
	Created:  {Running, Shutdown},
	Running:  {Paused, Shutdown},
	Paused:   {Running, Shutdown, Standby},
	Shutdown: {Running, Stopped},
	Standby:  {Paused, Stopped}, // Stopped: restored and powered off cleanly, or the snapshot discarded when asked
}

// ParseState accepts a settable state, case-insensitively, and returns its canonical spelling.
func ParseState(s string) (State, error) {
	for _, st := range Settable {
		if strings.EqualFold(s, string(st)) {
			return st, nil
		}
	}
	return "", fmt.Errorf("%w: state %q is not one of %s", ErrInvalidConfig, s, settableList())
}

func settableList() string {
	names := make([]string, len(Settable))
	for i, s := range Settable {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Plan returns the shortest path of single hops from → to, both ends included. from == to gives
// [from]; an unreachable target (from Unknown, or to a state that is not settable) is an error.
func Plan(from, to State) ([]State, error) {
	if !slices.Contains(Settable, to) {
		return nil, fmt.Errorf("%w: state %q is not one of %s", ErrInvalidConfig, to, settableList())
	}
	if from == to {
		return []State{from}, nil
	}
	prev := map[State]State{from: ""}
	queue := []State{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, next := range hops[cur] {
			if _, seen := prev[next]; seen {
				continue
			}
			prev[next] = cur
			if next == to {
				path := []State{to}
				for s := cur; s != ""; s = prev[s] {
					path = append([]State{s}, path...)
				}
				return path, nil
			}
			queue = append(queue, next)
		}
	}
	return nil, fmt.Errorf("%w: no transition from %s to %s", ErrInvalidState, from, to)
}
