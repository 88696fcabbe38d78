package ptrace

import (
	"fmt"
	"runtime/debug"

	"github.com/rtcr/rtcr/internal/osthread"
	"golang.org/x/sys/unix"
)

// Tracer is one OS thread that makes ptrace requests: the kernel binds a
// tracee to the thread that attached it, so every request about a thread
// must come from its tracer. A dump gives every process of a tree its own
// Tracer, so that processes are frozen and injected into in parallel.
//
// Like Run, the goroutine behind a Tracer is locked to its OS thread and
// never unlocked: once Close ends it, the runtime destroys the thread (and
// the kernel detaches whatever it still traced, as it would if rtcr died),
// and no other goroutine ever runs on it.
type Tracer struct {
	work chan func()
	tid  int
}

// NewTracer starts a tracer thread.
func NewTracer() *Tracer {
	t := &Tracer{work: make(chan func())}
	ready := make(chan int)
	osthread.Go(func() { // its own thread, which Close ends
		ready <- unix.Gettid()
		for fn := range t.work {
			fn()
		}
	})
	t.tid = <-ready
	return t
}

// Tid is the id of the tracer's OS thread: the TracerPid /proc shows for
// the threads it traces.
func (t *Tracer) Tid() int { return t.tid }

// Do runs fn on the tracer thread and returns its error. Calls from several
// goroutines are served one after the other. A panic in fn is returned as
// an error.
func (t *Tracer) Do(fn func() error) error {
	done := make(chan error, 1)
	t.work <- func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("tracer panic: %v\n%s", r, debug.Stack())
			}
		}()
		done <- fn()
	}
	return <-done
}

// Close ends the tracer thread. Threads it still traces are detached by
// the kernel where they stand; callers release or kill them first.
func (t *Tracer) Close() { close(t.work) }
