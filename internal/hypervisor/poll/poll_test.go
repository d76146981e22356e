package poll

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// counter is a condition that is done on try doneAt (0: never) and fails with failErr on try
// failAt (0: never), recording when each try began.
type counter struct {
	doneAt, failAt int
	failErr        error
	tries          []time.Time
}

func (c *counter) cond(context.Context) (bool, error) {
	c.tries = append(c.tries, time.Now())
	n := len(c.tries)
	if n == c.failAt {
		return false, c.failErr
	}
	return n == c.doneAt, nil
}

func TestUntilEndsWithItsCondition(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		cond      counter
		wantTries int
		wantErr   error
	}{
		{name: "done on the first try returns at once", cond: counter{doneAt: 1}, wantTries: 1},
		{name: "done on a later try", cond: counter{doneAt: 3}, wantTries: 3},
		{name: "an error ends the wait with that error", cond: counter{failAt: 2, failErr: boom}, wantTries: 2, wantErr: boom},
		{name: "a wrapped error keeps its chain", cond: counter{failAt: 1, failErr: fmt.Errorf("look: %w", boom)}, wantTries: 1, wantErr: boom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := Until(context.Background(), 5*time.Millisecond, tc.cond.cond)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if err != nil && Stopped(err) {
				t.Fatalf("the condition's error %v counts as the wait's own end", err)
			}
			if len(tc.cond.tries) != tc.wantTries {
				t.Fatalf("%d tries, want %d", len(tc.cond.tries), tc.wantTries)
			}
			if least := time.Duration(tc.wantTries-1) * 5 * time.Millisecond; time.Since(start) < least {
				t.Fatalf("returned after %v, sooner than %d pauses of 5ms", time.Since(start), tc.wantTries-1)
			}
		})
	}
}

func TestCancellingTheContextEndsAPauseAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	c := counter{}
	start := time.Now()
	err := Until(ctx, time.Hour, c.cond)
	if !errors.Is(err, context.Canceled) || !Stopped(err) {
		t.Fatalf("got %v, want a stop with context.Canceled", err)
	}
	if err.Error() != context.Canceled.Error() {
		t.Fatalf("the stop reads %q, want the context's own words %q", err, context.Canceled)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the wait went on %v after the context was cancelled", d)
	}
	if len(c.tries) != 1 {
		t.Fatalf("%d tries, want 1", len(c.tries))
	}
}

func TestAContextDeadlineEndsTheWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	c := counter{}
	start := time.Now()
	err := Until(ctx, 10*time.Millisecond, c.cond)
	if !errors.Is(err, context.DeadlineExceeded) || !Stopped(err) {
		t.Fatalf("got %v, want a stop with context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 60*time.Millisecond || d > 5*time.Second {
		t.Fatalf("the wait ended after %v, want about 60ms", d)
	}
	if len(c.tries) < 2 {
		t.Fatalf("%d tries in 60ms at a 10ms pace", len(c.tries))
	}
}

func TestTheFirstTryIsMadeEvenWhenTheContextHasEnded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := counter{doneAt: 1}
	if err := Until(ctx, time.Hour, done.cond); err != nil || len(done.tries) != 1 {
		t.Fatalf("a condition that holds at once: %v after %d tries, want nil after 1", err, len(done.tries))
	}
	never := counter{}
	if err := Until(ctx, time.Hour, never.cond); !Stopped(err) || !errors.Is(err, context.Canceled) || len(never.tries) != 1 {
		t.Fatalf("a condition that does not hold: %v after %d tries, want a stop after 1", err, len(never.tries))
	}
}

func TestWithinStopsWhenItsTimeoutHasPassed(t *testing.T) {
	c := counter{}
	start := time.Now()
	err := Within(context.Background(), 50*time.Millisecond, 10*time.Millisecond, c.cond)
	if !errors.Is(err, ErrTimeout) || !Stopped(err) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a stop with ErrTimeout", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %v, want about 50ms", d)
	}
	if len(c.tries) < 2 {
		t.Fatalf("%d tries in 50ms at a 10ms pace", len(c.tries))
	}
}

func TestWithinAZeroTimeoutAllowsOneTry(t *testing.T) {
	for _, timeout := range []time.Duration{0, -time.Second} {
		c := counter{}
		if err := Within(context.Background(), timeout, time.Hour, c.cond); !errors.Is(err, ErrTimeout) || len(c.tries) != 1 {
			t.Fatalf("timeout %v: %v after %d tries, want ErrTimeout after 1", timeout, err, len(c.tries))
		}
		c = counter{doneAt: 1}
		if err := Within(context.Background(), timeout, time.Hour, c.cond); err != nil {
			t.Fatalf("timeout %v, done on the only try: %v", timeout, err)
		}
	}
}

func TestWithinLetsATryUnderWayAtTheTimeoutAnswer(t *testing.T) {
	tries := 0
	err := Within(context.Background(), 20*time.Millisecond, 5*time.Millisecond, func(ctx context.Context) (bool, error) {
		if _, ok := ctx.Deadline(); ok {
			t.Error("the condition got a context with Within's timeout: a try under way would be cut short")
		}
		tries++
		if tries == 2 {
			time.Sleep(40 * time.Millisecond) // past the timeout
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("a try that was under way when the timeout passed and then held: %v", err)
	}
}

func TestWithinHonoursTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	c := counter{}
	err := Within(ctx, time.Hour, 5*time.Millisecond, c.cond)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) || !Stopped(err) {
		t.Fatalf("got %v, want a stop with the context's deadline", err)
	}
}

func TestBackoffDoublesThePauseUpToItsMaximum(t *testing.T) {
	c := counter{doneAt: 6}
	if err := Backoff(context.Background(), 10*time.Millisecond, 40*time.Millisecond, c.cond); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{10, 20, 40, 40, 40}
	if len(c.tries) != len(want)+1 {
		t.Fatalf("%d tries, want %d", len(c.tries), len(want)+1)
	}
	for i, w := range want {
		if gap := c.tries[i+1].Sub(c.tries[i]); gap < w*time.Millisecond {
			t.Errorf("pause %d lasted %v, want at least %vms", i+1, gap, w)
		}
	}
	if gap := c.tries[5].Sub(c.tries[4]); gap > 2*time.Second {
		t.Errorf("the pause grew past its maximum: %v", gap)
	}
}

func TestIgnoreErrorsAsksAgainAfterAFailedLook(t *testing.T) {
	tries := 0
	err := Until(context.Background(), time.Millisecond, IgnoreErrors(func(context.Context) (bool, error) {
		tries++
		if tries < 3 {
			return true, errors.New("no answer") // done with an error is not done
		}
		return true, nil
	}))
	if err != nil || tries != 3 {
		t.Fatalf("%v after %d tries, want nil after 3", err, tries)
	}
}

func TestAWaitInsideAConditionThatStoppedIsAFailedCondition(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	outer := Until(context.Background(), time.Hour, func(context.Context) (bool, error) {
		inner := Until(ctx, time.Hour, func(context.Context) (bool, error) { return false, nil })
		if !Stopped(inner) {
			t.Errorf("the inner wait's end %v is not a stop", inner)
		}
		return false, inner
	})
	if Stopped(outer) {
		t.Fatalf("the outer wait reports %v as its own end; its context never ended", outer)
	}
	if !errors.Is(outer, context.Canceled) {
		t.Fatalf("got %v, want the inner wait's context.Canceled", outer)
	}
}
