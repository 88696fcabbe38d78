package rtcr_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestThreadsAndGo checkpoints multi-threaded programs in the middle of
// their work — pthreads contending on a mutex and a condition variable, a
// goroutine-heavy Go program — restores each after the original was
// killed, twice in a row, and lets the program check its own results.
func TestThreadsAndGo(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name string
		bin  func(t *testing.T) string
		args []string
	}{
		{"pthreads", func(t *testing.T) string { return testutil.BuildC(t, "threads", false) }, []string{"8", "trigger"}},
		{"go", func(t *testing.T) string { return testutil.BuildGo(t, "goprog") }, []string{"trigger"}},
		// Threads are born and die all the time: the freeze must catch a
		// consistent set (and a thread exiting mid-seize must not fail it).
		{"thread churn", func(t *testing.T) string { return testutil.BuildC(t, "spawner", false) }, []string{"trigger"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := start(t, tc.bin(t), tc.args...)
			testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
			for round := 0; round < 3; round++ {
				time.Sleep(50 * time.Millisecond) // let the threads get busy
				dir := tg.dump(false)
				tg.restore(dir)
				tg.done = false
			}
			tg.fire()
			if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
				t.Fatalf("%s after restore: exit %d, output:\n%s", tc.name, code, tg.output())
			}
		})
	}
}

// TestPythonThreads checkpoints python3 running a script with eight worker
// threads, a producer and a consumer, twice, restoring after each kill.
func TestPythonThreads(t *testing.T) {
	testutil.RequireRoot(t)
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tg := start(t, python, filepath.Join(root, "testdata", "pythreads.py"), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	for round := 0; round < 2; round++ {
		time.Sleep(50 * time.Millisecond)
		dir := tg.dump(false)
		tg.restore(dir)
		tg.done = false
	}
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("python after restore: exit %d, output:\n%s", code, tg.output())
	}
}
