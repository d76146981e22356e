// Package poll waits for a condition by asking it again and again: within the caller's context,
// at a steady or doubling pace, and optionally within a timeout of its own. A wait never sleeps
// past the end of its context.
package poll

import (
	"context"
	"errors"
	"time"
)

// Cond is what a wait asks: done once what it waits for holds. An error ends the wait with that
// error.
type Cond func(ctx context.Context) (done bool, err error)

// ErrTimeout is why Within stopped when its timeout passed before its condition held.
var ErrTimeout = errors.New("timed out")

// Until tries cond at once and then again after each pause of length every, until cond is done
// (Until returns nil) or fails (its error, as it is). When ctx ends first, Until returns ctx's error,
// which Stopped tells from a failure of cond. The first try is made even when ctx has ended
// already, so that a look that needs no context still gets its answer.
func Until(ctx context.Context, every time.Duration, cond Cond) error {
	return wait(ctx, every, every, time.Time{}, cond)
}

// Within is Until with a timeout of its own, looked at between tries: a try under way when it
// passes is not cut short, and cond gets ctx itself. When the timeout passes first, Within returns
// ErrTimeout (Stopped too). A timeout of zero or less allows one try.
func Within(ctx context.Context, timeout, every time.Duration, cond Cond) error {
	return wait(ctx, every, every, time.Now().Add(timeout), cond)
}

// Backoff is Until with a pause that starts at first and doubles after every try, up to longest.
func Backoff(ctx context.Context, first, longest time.Duration, cond Cond) error {
	return wait(ctx, first, longest, time.Time{}, cond)
}

// IgnoreErrors is cond with its errors taken as "not yet": a look that fails is asked again.
func IgnoreErrors(cond Cond) Cond {
	return func(ctx context.Context) (bool, error) {
		done, err := cond(ctx)
		return done && err == nil, nil
	}
}

// Stopped reports whether err is how a wait ended when its condition never held: its context
// ended, or Within's timeout passed. It looks at err as the wait returned it, not at errors
// inside it: to the wait around it, a wait inside a condition that stopped is a failed condition.
func Stopped(err error) bool {
	_, ok := err.(stopped) //nolint:errorlint // not errors.As: only the wait's own end counts
	return ok
}

// stopped marks the end of a wait whose condition never held; it reads as the cause.
type stopped struct{ cause error }

func (s stopped) Error() string { return s.cause.Error() }
func (s stopped) Unwrap() error { return s.cause }

func wait(ctx context.Context, pause, longest time.Duration, deadline time.Time, cond Cond) error {
	for {
		done, err := cond(ctx)
		if s, ok := err.(stopped); ok { //nolint:errorlint // only a wait's own end, not one wrapped by cond
			return s.cause // a wait inside cond stopped: to this one, cond failed
		}
		if err != nil || done {
			return err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return stopped{ErrTimeout}
		}
		if err := sleep(ctx, pause); err != nil {
			return stopped{err}
		}
		pause = min(pause*2, longest)
	}
}

// sleep pauses for d, or until ctx ends, and then returns ctx's error.
func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
