package tree

import (
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// TestChildMapWhileProcessesExit: processes exiting while /proc is listed
// (a busy machine) are skipped, whether their stat file is gone (ENOENT)
// or the task dies between its open and read (ESRCH).
func TestChildMapWhileProcessesExit(t *testing.T) {
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			_ = exec.Command("/bin/true").Run()
		}
	}()
	defer func() { stop.Store(true); <-done }()
	deadline := time.Now().Add(3 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		if _, err := ChildMap(); err != nil {
			t.Fatalf("ChildMap, pass %d: %v", n, err)
		}
	}
}
