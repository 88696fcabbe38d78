package rtcr_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestTimerfdSignalfd checkpoints testdata/timerfds.c, kills it, waits
// 1.5 s and restores it; the program then checks: its periodic timerfd
// reports the expirations it had not read at the dump and keeps firing at
// its interval, an expired one-shot timer still has its unread
// expiration, an absolute (TFD_TIMER_ABSTIME) timer kept its expiry (one
// restored relative to its time left would be 1.5 s late), and its
// signalfd reads the SIGUSR1 the test sends after the restore. Flags
// (O_NONBLOCK, close-on-exec) are checked on each.
func TestTimerfdSignalfd(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "timerfds", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 20*time.Second)
	dir := tg.dump(false)
	time.Sleep(1500 * time.Millisecond)
	tg.restore(dir)
	tg.fire()
	if err := unix.Kill(tg.pid, unix.SIGUSR1); err != nil {
		t.Fatalf("send SIGUSR1 to %d: %v", tg.pid, err)
	}
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("timerfds after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestTimerfdCancelOnSetRefused: a timerfd armed with
// TFD_TIMER_CANCEL_ON_SET (whose "clock was set" state fdinfo does not
// show) makes the dump refuse, naming the fd and the flag, and the
// process runs on.
func TestTimerfdCancelOnSetRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "timerfds", false), "trigger", "cancel")
	testutil.WaitForFile(t, tg.out, "ready\n", 20*time.Second)
	tg.dumpRefused("fd 7 (", "TFD_TIMER_CANCEL_ON_SET")
	tg.fire()
	if err := unix.Kill(tg.pid, unix.SIGUSR1); err != nil {
		t.Fatalf("send SIGUSR1 to %d: %v", tg.pid, err)
	}
	if code := tg.waitOriginal(); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after the refused dump: exit %d, output:\n%s", code, tg.output())
	}
}
