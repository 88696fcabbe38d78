package rtcr

import (
	"errors"
	"testing"
	"time"
)

// TestAllOf: every check runs, also after one failed, and the error is the
// first in their order, not the first to come.
func TestAllOf(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	ran := make([]bool, 3)
	err := allOf(
		func() error { ran[0] = true; return nil },
		func() error { time.Sleep(20 * time.Millisecond); ran[1] = true; return errA },
		func() error { ran[2] = true; return errB },
	)
	if err != errA {
		t.Fatalf("allOf: %v, want %v (the first in order)", err, errA)
	}
	for i, r := range ran {
		if !r {
			t.Fatalf("check %d did not run", i)
		}
	}
	if err := allOf(func() error { return nil }); err != nil {
		t.Fatalf("allOf of a passing check: %v", err)
	}
}
