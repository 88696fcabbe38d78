package rtcr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestFDStatusFlags checkpoints testdata/fdflags.c, kills it and restores
// it; the program then checks its fds: O_NONBLOCK on one pipe end and not
// the other, O_APPEND on a file (a write after lseek(0) appends), O_ASYNC
// with F_SETOWN_EX and F_SETSIG on a pipe whose next byte must bring the
// signal with si_fd set, O_NONBLOCK on an epoll fd.
func TestFDStatusFlags(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "fdflags", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("fd flags after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestFileLockRefused: a dump of a process holding a file lock (flock or
// POSIX, shown as a "lock:" line in fdinfo) is refused naming the fd and
// the lock, and the process runs on with its fds intact.
func TestFileLockRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdflags", false)
	for _, lock := range []string{"flock", "posixlock"} {
		t.Run(lock, func(t *testing.T) {
			tg := start(t, bin, "trigger", lock)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
			if !errors.Is(err, files.ErrUnsupported) || !strings.Contains(err.Error(), "fd 9 (") || !strings.Contains(err.Error(), "file lock") {
				t.Fatalf("error %v, want ErrUnsupported naming fd 9 and its file lock", err)
			}
			tg.fire()
			if code := tg.waitOriginal(); code != 0 || !strings.Contains(tg.output(), "OK\n") {
				t.Fatalf("after the refused dump: exit %d, output:\n%s", code, tg.output())
			}
		})
	}
}
