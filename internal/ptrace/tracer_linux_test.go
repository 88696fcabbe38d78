package ptrace

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTracerThread: every function given to a Tracer runs on its one OS
// thread (the kernel binds tracees to it), whoever calls Do; a panic comes
// back as an error and the tracer goes on serving.
func TestTracerThread(t *testing.T) {
	tr := NewTracer()
	defer tr.Close()
	done := make(chan int, 8)
	for range 8 {
		go func() {
			var tid int
			_ = tr.Do(func() error { tid = unix.Gettid(); return nil })
			done <- tid
		}()
	}
	for range 8 {
		if tid := <-done; tid != tr.Tid() {
			t.Fatalf("ran on thread %d, the tracer is %d", tid, tr.Tid())
		}
	}
	want := errors.New("failed")
	if err := tr.Do(func() error { return want }); err != want {
		t.Fatalf("Do returned %v, want %v", err, want)
	}
	err := tr.Do(func() error { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("a panic came back as %v", err)
	}
	var tid int
	if err := tr.Do(func() error { tid = unix.Gettid(); return nil }); err != nil || tid != tr.Tid() {
		t.Fatalf("after the panic: thread %d (%v), want %d", tid, err, tr.Tid())
	}
}
