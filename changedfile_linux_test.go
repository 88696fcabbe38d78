package rtcr_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// startTail starts `tail ---disable-inotify -f` (GNU tail spells its hidden option with three dashes) on a log file of two lines
// (it polls the file's size) and waits until it shows them. It returns
// the target and the log's path.
func startTail(t *testing.T) (*target, string) {
	t.Helper()
	tail, err := exec.LookPath("tail")
	if err != nil {
		t.Skip("tail (coreutils) is not installed")
	}
	log := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(log, []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := start(t, tail, "---disable-inotify", "-s", "0.02", "-n", "+1", "-f", log)
	testutil.WaitForFile(t, tg.out, "one\ntwo\n", 10*time.Second)
	return tg, log
}

// TestGrownFileReopened: `tail -f` on a log file that grew while it was
// down (dumped, killed, lines appended, restored) is reopened at its
// position and shows the new lines.
func TestGrownFileReopened(t *testing.T) {
	testutil.RequireRoot(t)
	tg, log := startTail(t)
	dir := tg.dump(false)
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("three\nfour\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tg.restore(dir)
	testutil.WaitForFile(t, tg.out, "one\ntwo\nthree\nfour\n", 10*time.Second)
	if err := os.WriteFile(log, []byte("one\ntwo\nthree\nfour\nfive\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForFile(t, tg.out, "one\ntwo\nthree\nfour\nfive\n", 10*time.Second)
}

// TestChangedFileRefused: a file open in the image that is gone, was
// replaced by another kind of file, or shrank below the position is
// refused before any process is created, the message saying which.
func TestChangedFileRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name   string
		change func(path string) error
		want   string
	}{
		{"gone", os.Remove, "is gone since the checkpoint"},
		{"directory", func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Mkdir(p, 0o755)
		}, "was replaced by another kind of file (a directory, was a regular file)"},
		{"shrunk", func(p string) error { return os.Truncate(p, 3) }, "shrank below the position since the checkpoint (3 bytes, position 8; it had 8 bytes)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg, log := startTail(t)
			dir := tg.dump(false)
			if err := tc.change(log); err != nil {
				t.Fatal(err)
			}
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), log+" "+tc.want) {
				t.Fatalf("restore error %v, want %q", err, log+" "+tc.want)
			}
			if !pidFree(tg.pid) {
				t.Fatalf("a process with pid %d exists after a refused restore", tg.pid)
			}
			tg.done = true
		})
	}
}

// TestProcFilePosition: a file of /proc, whose size is 0, read to a
// position past that size comes back at its position (zdtm fd01, whose
// restore was refused as if the file had shrunk).
func TestProcFilePosition(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "procpos", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("position in /proc/sys/fs/nr_open")
}
