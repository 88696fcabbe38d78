package rtcr_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestFifoRoundTrip checkpoints testdata/fifofile.c holding a FIFO by
// path with "hello" buffered in it (a read end with O_NONBLOCK, a
// blocking write end), kills it and restores it: the program then reads
// exactly "hello" once (the bytes were put back, once), its flags are
// the recorded ones, and both fds are still the FIFO in its directory.
func TestFifoRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "fifofile", false), "trigger", "fifo")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("FIFO")
}

// TestFifoReplacedRefused: a FIFO replaced by a regular file (or one
// gone) between dump and restore is refused before any process exists,
// never opened: a FIFO where a file was recorded is refused the same way
// (the hang defence of the path checks).
func TestFifoReplacedRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fifofile", false)
	tests := []struct {
		name   string
		change func(path string) error
		want   string
	}{
		{"regular file", func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.WriteFile(p, []byte("hello"), 0o600)
		}, "is no longer a FIFO"},
		{"vanished", os.Remove, "has vanished since the checkpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := start(t, bin, "trigger", "fifo")
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			dir := tg.dump(false)
			if err := tc.change(filepath.Join(tg.dir, "fifo")); err != nil {
				t.Fatal(err)
			}
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDeletedFileRoundTrip checkpoints testdata/fifofile.c holding a
// deleted regular file open twice (fd 3 read-write at offset 4, fd 4
// read-only), kills it and restores it: the program then finds fd 3 still
// a deleted file with no name in its directory, reads the rest of its
// contents from the offset, the byte after the hole and zeros in the
// hole, has its mode, and a write on fd 3 is read by fd 4 (one file
// again), which is still read-only. With "delfork" a forked child holds
// both fds too, and what it writes after the restore is read by the
// parent: one file for the tree. With "delfifo" fd 3 is a deleted FIFO
// (still one that reads back what it writes), with "dellinked" a file
// whose open name was removed after it was linked as "data2" (reopened
// as that, with one link).
func TestDeletedFileRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fifofile", false)
	for _, arg := range []string{"deleted", "delfork", "delfifo", "dellinked"} {
		t.Run(arg, func(t *testing.T) {
			tg := start(t, bin, "trigger", arg)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.roundTripOK("deleted file")
		})
	}
}

// TestDeletedFileRefused: a dump of a process holding a deleted regular
// file with more data than the manifest holds open is refused naming the
// fd, and the process runs on with its fds intact (it uses them after the
// refused dump). (A deleted FIFO, and a file deleted but linked under
// another name in its directory, were refused too: they round-trip now.)
func TestDeletedFileRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fifofile", false)
	tests := []struct{ arg, want string }{
		{"bigdeleted", "deleted file with more than 16777216 bytes of data"},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.arg)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.dumpRefused("fd 3 (", tc.want)
			tg.runsOnOK()
		})
	}
}
