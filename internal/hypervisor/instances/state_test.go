package instances

import (
	"errors"
	"slices"
	"testing"
)

func TestPlanCoversEveryPair(t *testing.T) {
	S, C, R, P, D, B := Stopped, Created, Running, Paused, Shutdown, Standby
	want := map[[2]State][]State{
		{S, R}: {S, C, R}, {S, P}: {S, C, R, P}, {S, B}: {S, C, R, P, B}, {S, S}: {S},
		{C, R}: {C, R}, {C, P}: {C, R, P}, {C, B}: {C, R, P, B}, {C, S}: {C, D, S},
		{R, R}: {R}, {R, P}: {R, P}, {R, B}: {R, P, B}, {R, S}: {R, D, S},
		{P, R}: {P, R}, {P, P}: {P}, {P, B}: {P, B}, {P, S}: {P, D, S},
		{D, R}: {D, R}, {D, P}: {D, R, P}, {D, B}: {D, R, P, B}, {D, S}: {D, S},
		{B, R}: {B, P, R}, {B, P}: {B, P}, {B, B}: {B}, {B, S}: {B, S},
	}
	for _, from := range []State{S, C, R, P, D, B, Unknown} {
		for _, to := range Settable {
			got, err := Plan(from, to)
			exp, ok := want[[2]State{from, to}]
			if !ok {
				if !errors.Is(err, ErrInvalidState) {
					t.Errorf("Plan(%s, %s) = %v, %v; want ErrInvalidState", from, to, got, err)
				}
				continue
			}
			if err != nil || !slices.Equal(got, exp) {
				t.Errorf("Plan(%s, %s) = %v, %v; want %v", from, to, got, err, exp)
				continue
			}
			for i := 0; i+1 < len(got); i++ {
				if !canHop(got[i], got[i+1]) {
					t.Errorf("Plan(%s, %s) uses the illegal hop %s → %s", from, to, got[i], got[i+1])
				}
			}
		}
	}
}

func TestPlanRejectsStatesUsersCannotSet(t *testing.T) {
	for _, to := range []State{Created, Shutdown, Unknown, "Sleeping"} {
		if _, err := Plan(Running, to); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Plan(Running, %s) error = %v; want ErrInvalidConfig", to, err)
		}
	}
}

func TestParseStateNamesTheAllowedValues(t *testing.T) {
	if s, err := ParseState("standby"); err != nil || s != Standby {
		t.Fatalf("ParseState(standby) = %q, %v", s, err)
	}
	_, err := ParseState("Hibernated")
	if !errors.Is(err, ErrInvalidConfig) || err.Error() != `invalid configuration: state "Hibernated" is not one of Running, Paused, Standby, Stopped` {
		t.Fatalf("ParseState(Hibernated) error = %v", err)
	}
}

// canHop reports whether from → to is a single legal transition.
func canHop(from, to State) bool { return slices.Contains(hops[from], to) }
