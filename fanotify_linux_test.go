package rtcr_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// fanotifyDir mounts a tmpfs of its own for a fanotify test (a mount
// mark sees events of its mount only: no other process touches this one).
func fanotifyDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fan")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("rtcr-fanotify", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestFanotifyRoundTrip: a fanotify group (notification class, non
// blocking, unlimited queue) with an inode mark and a mount mark with an
// ignored mask comes back with the same flags and marks (its fdinfo lines
// compared from inside, the mount id aside) and reports events again
// (zdtm fanotify00 has the same group, but events are queued at its dump,
// which is refused). The dump used to refuse every fanotify group.
func TestFanotifyRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	dir := fanotifyDir(t)
	tg := start(t, testutil.BuildC(t, "fanotify", false), "trigger", dir, "marks")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("fanotify group")
}

// TestFanotifyQueuedRefused: a fanotify group with events queued is
// refused naming them (they are not saved), and the process runs on.
func TestFanotifyQueuedRefused(t *testing.T) {
	testutil.RequireRoot(t)
	dir := fanotifyDir(t)
	tg := start(t, testutil.BuildC(t, "fanotify", false), "trigger", dir, "queued")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.dumpRefused("fd 3 (anon_inode:[fanotify])", "queued fanotify events")
	tg.runsOnOK()
}
