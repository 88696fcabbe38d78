package mem_test

import (
	"bytes"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestDumpHeld: DumpHeld writes nothing before start is closed while its
// budget lasts, then the same bytes as Dump; with a budget too small it
// writes at once (held false), the same bytes again.
func TestDumpHeld(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "heap", false)
	tg := testutil.StartTarget(t, bin, "ready\n", heapArgs(t)...)
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
		if err := r.CloseRemote(); err != nil {
			t.Errorf("close remote: %v", err)
			return
		}
		var want bytes.Buffer
		if _, _, err := mem.Dump(tg.Pid, image.NewPageWriter(&want), nil, nil); err != nil {
			t.Errorf("dump: %v", err)
			return
		}
		for _, tc := range []struct {
			name   string
			budget int64
			held   bool
		}{{"ample budget", 1 << 30, true}, {"one buffer", 8 << 20, false}} {
			var got bytes.Buffer
			start := make(chan struct{})
			_, _, held, wait, err := mem.DumpHeld(tg.Pid, image.NewPageWriter(&got), nil, nil, start, mem.NewHoldBudget(tc.budget))
			if err != nil {
				t.Errorf("%s: DumpHeld: %v", tc.name, err)
			}
			if held != tc.held {
				t.Errorf("%s: held %v, want %v (%d bytes to save)", tc.name, held, tc.held, want.Len())
			}
			if held && got.Len() != 0 {
				t.Errorf("%s: %d bytes written before start", tc.name, got.Len())
			}
			close(start)
			if err := wait(); err != nil {
				t.Errorf("%s: wait: %v", tc.name, err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("%s: %d bytes written, not Dump's %d", tc.name, got.Len(), want.Len())
			}
		}
	})
}
