package ptrace

import (
	"os"
	"testing"
)

// TestTracerNotMainThread: no tracer runs on the process's main thread.
// The Go runtime never ends that thread (a goroutine locked to it that
// exits leaves it parked), so a tracer there would never let go of its
// tracees when it is closed: a target it still traced would stay stopped
// as long as the program embedding rtcr runs.
func TestTracerNotMainThread(t *testing.T) {
	for i := range 300 {
		tr := NewTracer()
		tid := tr.Tid()
		tr.Close()
		if tid == os.Getpid() {
			t.Fatalf("tracer %d runs on the main thread (tid %d)", i, tid)
		}
	}
}
