package task_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/task"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestRobustRoundTrip dumps the robust futex list glibc registers for the
// main thread of testdata/counter (dynamic: glibc calls set_robust_list at
// start in every thread), registers it in a stub with task.RestoreRobust
// and reads the stub's back. The stub, which has no libc, starts without
// one.
func TestRobustRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "counter", false), "0\n")

	want, err := task.DumpRobust(tg.Pid)
	if err != nil {
		t.Fatalf("dump target: %v", err)
	}
	if want.Head == 0 || want.Len != image.RobustListHeadSize {
		t.Fatalf("target robust list %+v, want a non-zero head and length %d", want, image.RobustListHeadSize)
	}

	var before, got image.RobustList
	testutil.InStub(t, func(r *ptrace.Remote) {
		var err error
		if before, err = task.DumpRobust(r.Pid); err != nil {
			t.Errorf("dump empty stub: %v", err)
			return
		}
		if err := task.RestoreRobust(r.Injector, want); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		if got, err = task.DumpRobust(r.Pid); err != nil {
			t.Errorf("dump stub: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if before != (image.RobustList{}) {
		t.Errorf("empty stub has robust list %+v, want none", before)
	}
	if got != want {
		t.Errorf("after the round trip: robust list %+v, want %+v", got, want)
	}
}

// TestRobustNone: restoring "no list" (head 0) injects nothing and leaves
// the thread without one.
func TestRobustNone(t *testing.T) {
	testutil.RequireRoot(t)
	var got image.RobustList
	testutil.InStub(t, func(r *ptrace.Remote) {
		if err := task.RestoreRobust(r.Injector, image.RobustList{}); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		var err error
		if got, err = task.DumpRobust(r.Pid); err != nil {
			t.Errorf("dump stub: %v", err)
		}
	})
	if got != (image.RobustList{}) {
		t.Errorf("stub has robust list %+v, want none", got)
	}
}

// TestRobustPerThread: every thread of testdata/threads has its own list
// (glibc's head lives in the thread's struct pthread).
func TestRobustPerThread(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "threads", false), "ready\n", "3")
	tids, err := procfs.ListTasks(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < 4 {
		t.Fatalf("threads has tids %v, want at least 4", tids)
	}
	seen := map[uint64]int{}
	for _, tid := range tids {
		// A thread that exists may not have run yet: glibc registers its
		// list in start_thread, on the thread's first steps.
		var rl image.RobustList
		deadline := time.Now().Add(10 * time.Second)
		for {
			rl, err = task.DumpRobust(tid)
			if err != nil {
				t.Fatalf("dump thread %d: %v", tid, err)
			}
			if rl.Head != 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if rl.Head == 0 || rl.Len != image.RobustListHeadSize {
			t.Errorf("thread %d: robust list %+v, want a non-zero head and length %d", tid, rl, image.RobustListHeadSize)
		}
		if other, dup := seen[rl.Head]; dup {
			t.Errorf("threads %d and %d share robust list head %#x", other, tid, rl.Head)
		}
		seen[rl.Head] = tid
	}
}
