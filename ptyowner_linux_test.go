package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestPtyOwner checkpoints testdata/ptyowner.c, which gave its pty slave
// another owner and mode, and restores it: the new slave has them too
// (not rtcr's, who opened /dev/ptmx for it).
func TestPtyOwner(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "ptyowner", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("pty slave owner and mode")
}
