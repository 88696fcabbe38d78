package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestRelinkedFile checkpoints testdata/relinked.c, which holds a file
// open under a name it removed after linking the file under another name
// in the same directory (zdtm's unlink_fstat03), and restores it: the fd
// is the file again, reopened by its other name, at its position. (The
// dump used to refuse it.)
func TestRelinkedFile(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "relinked", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("file open by a deleted name")
}

// TestInotifyDeleted checkpoints testdata/inodeleted.c, whose inotify
// watch is on a file it deleted and holds open (zdtm's inotify00), and
// restores it: the watch is added again on the recreated deleted file and
// reports a write through the fd. (The dump used to refuse a watch on a
// file without a path.)
func TestInotifyDeleted(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "inodeleted", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("inotify watch on a deleted file")
}
