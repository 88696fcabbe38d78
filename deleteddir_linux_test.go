package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestDeletedDir checkpoints testdata/deleteddir.c: a parent and child
// whose working directory was removed (zdtm's cwd01), held also as an fd
// (cwd02), and another removed directory held as an fd (rmdir_open). The
// restore recreates them removed, under their names: the working
// directory and fd 3 are one directory again, in both processes, with its
// mode and, for readlink, its path; fd 4 is another. (The dump used to
// refuse the working directory and the fds.)
func TestDeletedDir(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "deleteddir", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("removed directories")
}

// TestDeletedDirNested: a removed directory whose parent was removed too
// (zdtm's rmdir_open) is restored under its old path: the parent is made
// for the time of the restore and removed again. (It failed at restore,
// after the dump had killed the process.)
func TestDeletedDirNested(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "deleteddir", false), "trigger", "nested")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("removed directory in a removed directory")
}
