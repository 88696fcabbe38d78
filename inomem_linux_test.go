package rtcr_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestMemfd checkpoints testdata/memfd.c, kills it and restores it; the
// program then checks its two memfds: names, contents around a hole, size,
// position, seals (F_SEAL_SHRINK|F_SEAL_GROW enforced; F_SEAL_SEAL of a
// memfd made without MFD_ALLOW_SEALING), close-on-exec and mode; with
// "shared" a dup of one, with "reopened" a second open of it through
// /proc, which must stay one memfd (a write through one fd shows through
// the other) with two positions.
func TestMemfd(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "memfd", false)
	for _, args := range [][]string{{"trigger"}, {"trigger", "shared"}, {"trigger", "reopened"}} {
		t.Run(strings.Join(args, "-"), func(t *testing.T) {
			tg := start(t, bin, args...)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.roundTripOK("memfds")
		})
	}
}

// TestInotify checkpoints testdata/inotify.c, kills it and restores it;
// the program then checks its inotify fd: the same watches in fdinfo (wds 2
// and 3 after a removed wd 1, masks, files), no event queued (the dummy
// watch restore uses for wd 1 leaves none), events on both watches with
// their wds, and wd 4 for its next watch.
func TestInotify(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "inotify", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("inotify")
}

// TestInoMemRefused: the inotify state rtcr does not restore
// are refused naming the fd, and the process runs on intact.
func TestInoMemRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct{ prog, arg, fd, want string }{
		{"inotify", "queued", "fd 3 (anon_inode:inotify)", "bytes of queued inotify events (not saved)"},
	}
	for _, tc := range tests {
		t.Run(tc.prog+"-"+tc.arg, func(t *testing.T) {
			tg := start(t, testutil.BuildC(t, tc.prog, false), "trigger", tc.arg)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.dumpRefused(tc.fd, tc.want)
			tg.runsOnOK()
		})
	}
}
