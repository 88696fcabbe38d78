package rtcr_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestMigrateIntegrityOnly: a server that takes integrity-only frames
// (--wire-integrity-only) refuses a client that encrypts, both saying
// why, before anything is written, and the source runs on; a client that
// chose integrity-only too migrates, and the numbers continue.
func TestMigrateIntegrityOnly(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token, "--wire-integrity-only")
	w := startMemWriter(t, np, 16)
	pid := w.cmd.Process.Pid
	out, code := migrate(t, np, pid, token)
	t.Logf("refused: %s", strings.TrimSpace(out))
	if code != 1 || !strings.Contains(out, "--wire-integrity-only") {
		t.Errorf("rtcr migrate encrypting to an integrity-only server: exit %d, %q", code, out)
	}
	if got := srv.entries(t); len(got) != 0 {
		t.Fatalf("serve's directory holds %v after a refused client, want nothing", got)
	}
	testutil.WaitForFile(t, srv.log, "--wire-integrity-only", 30*time.Second)
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+5))
	out, code = migrate(t, np, pid, token, "--wire-integrity-only")
	if code != 0 {
		t.Fatalf("rtcr migrate --wire-integrity-only: exit %d: %s\nserve:\n%s", code, out, readFile(srv.log))
	}
	restoredInit(t, out)
	n = len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20))
}
