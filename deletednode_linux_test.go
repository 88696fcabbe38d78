package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestDeletedNode checkpoints testdata/deletednode.c: a parent and child
// holding a deleted FIFO (two open file descriptions, bytes queued:
// zdtm's unlink_fifo) and a deleted /dev/null device node (deleted_dev).
// The restore recreates both without a name: one FIFO with the queued
// bytes, a device node with the same number and mode. (The dump used to
// refuse both.)
func TestDeletedNode(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "deletednode", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("deleted FIFO and device node")
}
