package files_test

import (
	"testing"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestPipeOpenFiles dumps testdata/pipeofd.c, whose pipe ends are each
// held through two open file descriptions (one a dup'd pair), one of each
// end with O_NONBLOCK, restores the fds into a stub and dumps them again:
// every fd keeps its own status flags and only the dup'd fds share an open
// file description. (Each end used to come back as one open file
// description, so O_NONBLOCK set on one fd showed on all.)
func TestPipeOpenFiles(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "pipeofd", false), "ready\n")
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
	checkPipeFDs(t, "target", want)
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
	checkPipeFDs(t, "restored", got)
}

// checkPipeFDs checks fds 3–7 are pipeofd.c's: access mode, O_NONBLOCK
// and O_LARGEFILE per fd, fds 4 and 5 one open file description, no other fd
// sharing one.
func checkPipeFDs(t *testing.T, who string, fds []image.FD) {
	t.Helper()
	// The ends pipe2 made have no O_LARGEFILE; opens have it.
	const large = 0o100000
	want := map[int]int{
		3: unix.O_RDONLY,
		4: unix.O_WRONLY | unix.O_NONBLOCK,
		5: unix.O_WRONLY | unix.O_NONBLOCK,
		6: unix.O_RDONLY | unix.O_NONBLOCK | large,
		7: unix.O_WRONLY | large,
	}
	seen := 0
	for _, fd := range fds {
		w, ok := want[fd.Num]
		if !ok {
			continue
		}
		seen++
		if fd.Kind != image.FDPipe {
			t.Errorf("%s fd %d is a %s, want a pipe", who, fd.Num, fd.Kind)
		}
		if got := fd.Flags & (unix.O_ACCMODE | unix.O_NONBLOCK | large); got != w {
			t.Errorf("%s fd %d has flags %#o, want %#o", who, fd.Num, got, w)
		}
		shares := fd.Num == 4 || fd.Num == 5
		if (fd.Shared != 0) != shares {
			t.Errorf("%s fd %d: shared open file id %d, want one only on fds 4 and 5", who, fd.Num, fd.Shared)
		}
	}
	if seen != len(want) {
		t.Errorf("%s has %d of fds 3-7: %s", who, seen, show(fds))
	}
}
