package files_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRoundTrip dumps the fd table of testdata/procstate.c, restores it
// into a stub, dumps the stub's and expects the same table: every fd at its
// number, of its kind, on its path, with its flags (O_CLOEXEC included)
// and offset, mode and size.
//
// The cases of placing an fd are all there: fds 3–6 are opened at their
// number in the stub (close-on-exec set by fcntl, or not), fds 0–2 and 20
// are opened at another number and moved with dup3 (with O_CLOEXEC for 20).
//
// The stub starts with the test binary's fds 0–2 (whatever go test gave
// it: pipes, a terminal): the target's 0–2 are /dev/null and its output
// file, so the restore must replace them, and close every fd the image
// does not have.
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "procstate", false)
	tests := []struct {
		name string
		args []string
	}{
		{"files", []string{"."}},
		// An O_PATH fd (fd 7 on DIR/rw), which cannot seek.
		{"o-path", []string{".", "opath"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := testutil.StartTarget(t, bin, "ready\n", tc.args...)
			roundTrip(t, tg, len(tc.args) > 1)
		})
	}
}

func roundTrip(t *testing.T, tg *testutil.Target, opath bool) {
	var want []image.FD
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
		var err error
		if want, err = files.Dump(tg.Pid); err != nil {
			t.Errorf("dump target: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	checkTarget(t, tg, want, opath)
	if err := files.Check(want); err != nil {
		t.Fatalf("check: %v", err)
	}

	var got []image.FD
	testutil.InStub(t, func(r *ptrace.Remote) {
		if err := files.Restore(r, want); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		var err error
		if got, err = files.Dump(r.Pid); err != nil {
			t.Errorf("dump stub: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after the round trip:\n got %s\nwant %s", show(got), show(want))
	}
}

// checkTarget makes sure the dump saw the fds procstate.c opens, so the
// round trip compares what the test means to.
func checkTarget(t *testing.T, tg *testutil.Target, fds []image.FD, opath bool) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(tg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// O_LARGEFILE is always set on x86_64 (fdinfo shows it).
	const large = 0o100000
	wantFDs := []fdWant{
		{0, "/dev/null", unix.O_RDONLY | large, 0},
		{1, dir + "/out", unix.O_WRONLY | unix.O_APPEND | large, 6},
		{2, dir + "/out", unix.O_WRONLY | unix.O_APPEND | large, 6},
		{3, dir + "/rw", unix.O_RDWR | large, 100},
		{4, dir + "/ro", unix.O_RDONLY | unix.O_CLOEXEC | large, 7},
		{5, dir + "/log", unix.O_WRONLY | unix.O_APPEND | large, 6},
		{6, dir, unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | large, 0},
		{20, "/dev/null", unix.O_WRONLY | unix.O_CLOEXEC | large, 0},
	}
	if opath {
		// O_PATH opens do not get O_LARGEFILE.
		wantFDs = append(wantFDs[:7:7], append([]fdWant{{7, dir + "/rw", unix.O_PATH, 0}}, wantFDs[7:]...)...)
	}
	if len(fds) != len(wantFDs) {
		t.Fatalf("target has fds %s, want %d fds", show(fds), len(wantFDs))
	}
	for i, w := range wantFDs {
		fd := fds[i]
		if fd.Num != w.num || fd.Kind != image.FDFile || fd.Path != w.path || fd.Flags != w.flags || fd.Offset != w.offset {
			t.Errorf("target fd %d is %s, want %d %s flags %#o at %d", i, show(fds[i:i+1]), w.num, w.path, w.flags, w.offset)
		}
	}
}

type fdWant struct {
	num    int
	path   string
	flags  int
	offset int64
}

func show(fds []image.FD) string {
	var b strings.Builder
	for _, fd := range fds {
		fmt.Fprintf(&b, "\n\t%d %s %s flags=%#o off=%d mode=%#o size=%d desc=%q",
			fd.Num, fd.Kind, fd.Path, fd.Flags, fd.Offset, fd.Mode, fd.Size, fd.Desc)
	}
	return b.String()
}
