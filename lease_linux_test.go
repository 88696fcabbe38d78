package rtcr_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// breakLease opens name in dir with flags|O_NONBLOCK, which must fail with
// EWOULDBLOCK: a lease conflicting with the open is held, and the kernel
// starts breaking it (SIGIO to the file's owner).
func breakLease(t *testing.T, dir, name string, flags int) {
	t.Helper()
	fd, err := unix.Open(filepath.Join(dir, name), flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		t.Fatalf("open %s (flags %#x) succeeded: no lease held on it", name, flags)
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("open %s (flags %#x): %v, want EWOULDBLOCK (a lease)", name, flags, err)
	}
}

// TestLeaseRoundTrip: a read and a write lease (F_SETLEASE) come back on
// the restored open file descriptions: F_GETLEASE reports them, in a
// child sharing the descriptions too, the process is the files' SIGIO
// owner again (and a file whose owner it had cleared has none), and opens by another process that conflict with them fail
// with EWOULDBLOCK and send the process SIGIO, as a held lease does. The
// dump used to refuse every lease (zdtm file_lease00).
func TestLeaseRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "lease", false)
	for _, mode := range []string{"plain", "fork", "noowner"} {
		t.Run(mode, func(t *testing.T) {
			tg := start(t, bin, "trigger", mode)
			testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
			dir := tg.dump(false)
			tg.restore(dir)
			tg.fire()
			testutil.WaitForFile(t, tg.out, "parent leases ok\n", 30*time.Second)
			breakLease(t, tg.dir, "r", unix.O_WRONLY)
			breakLease(t, tg.dir, "w", unix.O_RDONLY)
			// Only now may the program give its leases up.
			if err := os.WriteFile(filepath.Join(tg.dir, "broken"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if code := tg.wait(90 * time.Second); code != 0 {
				t.Fatalf("restored target exited %d; output:\n%s", code, tg.output())
			}
			testutil.WaitForFile(t, tg.out, "OK\n", 30*time.Second)
		})
	}
}

// TestLeaseBreakingRefused: a lease being broken at the dump (a process
// waits for its holder to give it up) is refused, naming the fd, and the
// process runs on.
func TestLeaseBreakingRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "lease", false), "trigger", "breaking")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	breakLease(t, tg.dir, "w", unix.O_RDONLY)
	tg.dumpRefused("fd 4 (", "lease being broken")
	tg.runsOnOK()
	_ = os.Remove(tg.trigger)
}
