package rtcr_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestTimersAndSignals checkpoints a program with a POSIX timer firing
// every 5 ms into a SIGUSR1 handler, a disarmed timer, a one-shot
// thread-directed timer and an interval itimer; twice, each time restoring
// after the original was killed. The program then checks its timers fire,
// keep their ids, and read back as set up.
func TestTimersAndSignals(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "timers", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	for round := 0; round < 2; round++ {
		time.Sleep(20 * time.Millisecond)
		dir := tg.dump(false)
		tg.restore(dir)
		tg.done = false
	}
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("timers after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestCredentials checkpoints a process that dropped root: other uids and
// gids (real, effective, saved, fs), supplementary groups, a few kept and
// ambient capabilities, a smaller bounding set, securebits,
// no_new_privs, dumpable, child-subreaper and parent-death signal.
func TestCredentials(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "creds", false), "trigger")
	// The program's fsuid must reach the trigger file.
	if err := os.Chmod(tg.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("creds after restore: exit %d, output:\n%s", code, tg.output())
	}
}
