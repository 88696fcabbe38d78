package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestOPathSymlink checkpoints testdata/opathlink.c, which holds an O_PATH
// fd on a symbolic link itself (zdtm's symlink), and restores it: the fd
// names the link again, not its target.
func TestOPathSymlink(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "opathlink", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("O_PATH fd on a symbolic link")
}
