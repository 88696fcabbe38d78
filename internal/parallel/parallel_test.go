package parallel

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestAll: every fn runs, also after one failed, and the error is the
// first in their order, not the first to come.
func TestAll(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	ran := make([]bool, 3)
	err := All(
		func() error { ran[0] = true; return nil },
		func() error { time.Sleep(20 * time.Millisecond); ran[1] = true; return errA },
		func() error { ran[2] = true; return errB },
	)
	if err != errA {
		t.Fatalf("All: %v, want %v (the first in order)", err, errA)
	}
	for i, r := range ran {
		if !r {
			t.Fatalf("fn %d did not run", i)
		}
	}
	if err := All(func() error { return nil }); err != nil {
		t.Fatalf("All of a passing fn: %v", err)
	}
}

// TestEach: every fn runs, at once (each waits for all to have started),
// and the first error in the order of ids is returned.
func TestEach(t *testing.T) {
	ids := []int{1, 2, 3, 4}
	var started atomic.Int32
	all := make(chan struct{})
	errOf := map[int]error{2: errors.New("two"), 4: errors.New("four")}
	err := Each(ids, func(id int) error {
		if started.Add(1) == int32(len(ids)) {
			close(all)
		}
		<-all
		return errOf[id]
	})
	if err != errOf[2] {
		t.Fatalf("Each returned %v, want the error of 2", err)
	}
}
