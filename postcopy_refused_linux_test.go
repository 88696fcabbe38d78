package rtcr_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestMigrateLazyRestoreRefused: the destination of a post-copy migration
// takes the image without checking it first (its lazy restore checks
// it); a restore that refuses it (here: a process outside `rtcr run`
// moved to the same host, whose pids its frozen source holds) fails the
// migration before the copy ran: the source runs on, with its memory,
// and the server keeps nothing, not even a staging directory.
func TestMigrateLazyRestoreRefused(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	dir := t.TempDir()
	out, f := testutil.OutputFile(t, dir)
	defer f.Close()
	cmd := np.command(np.b, testutil.BuildC(t, "memwriter", false), "4", "10")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	w := &memWriter{cmd: cmd, out: out}
	w.lines(t, 5)
	mout, code := migrate(t, np, cmd.Process.Pid, token, "--lazy")
	if code != 1 || !strings.Contains(mout, "the source runs on") || !strings.Contains(mout, "restore ") {
		t.Fatalf("rtcr migrate --lazy of a host process to the same host: exit %d, %q\nserve:\n%s", code, mout, readFile(srv.log))
	}
	t.Logf("%s", strings.TrimSpace(mout))
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+20)) // its memory checks pass too
	if got := srv.entries(t); len(got) != 0 {
		t.Errorf("serve's directory holds %v after a refused post-copy restore, want nothing", got)
	}
	if log := readFile(srv.log); !strings.Contains(log, "nothing runs here, the source resumes") {
		t.Errorf("serve's log does not say the restore failed:\n%s", log)
	}
}
