package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestNoVDSO checkpoints testdata/novdso.c, which unmapped its vdso
// (zdtm's vdso02), and restores it without one: rtcr injects its calls
// through a syscall instruction of the program's executable memory
// instead. (The dump used to refuse a process without a vdso.)
func TestNoVDSO(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "novdso", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("process without a vdso")
}
