package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestSharedFDTableRefused: a parent and child sharing one fd table
// (CLONE_FILES) are refused, naming the table, and run on. (Each used to
// come back with a table of its own.)
func TestSharedFDTableRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "clonefiles", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.dumpRefused("share one fd table (CLONE_FILES)")
	tg.runsOnOK()
}
