package osthread

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The main goroutine stays on the main thread: TestMain runs Go's
// goroutine body there, the case a tracer started by chance on the main
// thread would be.
func init() { runtime.LockOSThread() }

// onMain is the thread run ran fn on when called on the main thread, and
// whether run returned there.
var onMain struct {
	tid      int
	returned bool
}

func TestMain(m *testing.M) {
	if unix.Gettid() == unix.Getpid() {
		got := make(chan int, 1)
		run(func() { got <- unix.Gettid() })
		onMain.tid, onMain.returned = <-got, true
	}
	os.Exit(m.Run())
}

// TestMainThreadLeft: started on the main thread, fn runs on another one
// and the main thread is let go.
func TestMainThreadLeft(t *testing.T) {
	if !onMain.returned {
		t.Skip("TestMain did not run on the main thread")
	}
	if onMain.tid == os.Getpid() {
		t.Fatalf("fn ran on the main thread (%d)", onMain.tid)
	}
}

// TestThreadEnds: fn runs on a thread of its own, which ends when fn
// returns.
func TestThreadEnds(t *testing.T) {
	for range 20 {
		got := make(chan int, 1)
		Go(func() { got <- unix.Gettid() })
		tid := <-got
		if tid == os.Getpid() {
			t.Fatalf("fn ran on the main thread")
		}
		task := fmt.Sprintf("/proc/self/task/%d", tid)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(task); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("thread %d still exists 30 s after fn returned", tid)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestDo: fn runs on a thread other than the caller's, and Do returns
// once it has.
func TestDo(t *testing.T) {
	tid := 0
	Do(func() { tid = unix.Gettid() })
	if tid == 0 || tid == os.Getpid() || tid == unix.Gettid() {
		t.Fatalf("fn ran on thread %d (main %d, caller %d)", tid, os.Getpid(), unix.Gettid())
	}
}
