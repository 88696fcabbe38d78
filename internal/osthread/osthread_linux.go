// Package osthread runs functions on OS threads of their own that end
// with them: tracer threads (ptrace binds a tracee to the thread that
// attached it) and threads whose credentials are changed for good.
package osthread

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Go runs fn on a new goroutine locked to an OS thread other than the
// process's main thread; the thread ends when fn returns. A goroutine
// that ends locked to its thread ends that thread too, except on the
// main thread, which the Go runtime parks for good instead: a tracer
// there would keep its tracees attached (stopped, never killed by
// PTRACE_O_EXITKILL) as long as the program runs, and changed
// credentials would stay on a thread that never goes away.
func Go(fn func()) { go run(fn) }

// Do runs fn as Go does and returns once fn has returned.
func Do(fn func()) {
	done := make(chan struct{})
	Go(func() {
		defer close(done)
		fn()
	})
	<-done
}

// run is Go's goroutine: on the main thread it starts fn on another
// goroutine while it holds the main thread (so that goroutine runs
// elsewhere), waits until that one has locked its thread, and lets the
// main thread go.
func run(fn func()) {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		fn()
		return // still locked: the thread ends with the goroutine
	}
	locked := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(locked)
		fn()
	}()
	<-locked
	runtime.UnlockOSThread()
}
