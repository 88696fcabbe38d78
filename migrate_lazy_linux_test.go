package rtcr_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestMigrateLazy moves a memory writer by post-copy (rtcr migrate
// --lazy): the copy runs on the destination before its memory is there,
// its numbers continue without a gap, its memory checks pass, the source
// is killed once every page moved, and the destination keeps no image.
func TestMigrateLazy(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	w := startMemWriter(t, np, 64)
	out, code := migrate(t, np, w.cmd.Process.Pid, token, "--lazy", "--name", "writer")
	if code != 0 {
		t.Fatalf("rtcr migrate --lazy: exit %d: %s\nserve:\n%s", code, out, readFile(srv.log))
	}
	t.Logf("%s", strings.TrimSpace(out))
	restoredInit(t, out)
	if err := w.cmd.Wait(); err == nil || exitCode(t, err) != 128+9 {
		t.Errorf("the source's rtcr run ended with %v, want killed (exit 137)", err)
	}
	n := len(w.lines(t, 1))
	checkConsecutive(t, w.lines(t, n+120)) // two memory checks after the move at least
	testutil.WaitForFile(t, srv.log, "the source is dead", 30*time.Second)
	if got := srv.entries(t); len(got) != 0 {
		t.Errorf("serve's directory holds %v after a post-copy migration, want nothing", got)
	}
}

// startLazy starts rtcr migrate --lazy of w over a throttled link and
// waits until the copy runs on the destination (pages still coming).
func startLazy(t *testing.T, np *netPair, srv *served, w *memWriter, token string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := np.command(np.b, testutil.BuildRtcr(t), "migrate", "--lazy", "--pid", strconv.Itoa(w.cmd.Process.Pid),
		"--to", np.addrA+":"+servePort, "--token-file", token)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	testutil.WaitForFile(t, srv.log, "restored lazily", 60*time.Second)
	return cmd, &out
}

// waitOnlySource waits until the memwriter left is the source's (the
// destination's copy is gone), then checks the source counts on alone
// with its memory intact.
func waitOnlySource(t *testing.T, w *memWriter, srv *served) {
	t.Helper()
	exe := testutil.BuildC(t, "memwriter", false)
	deadline := time.Now().Add(60 * time.Second)
	for len(programsOf(exe)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("memwriter processes %v, want only the source; serve:\n%s", programsOf(exe), readFile(srv.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The copy wrote to the same file while it ran: from here on only
	// the source writes.
	n := len(w.lines(t, 1))
	lines := w.lines(t, n+60) // a memory check at least
	checkConsecutive(t, lines[n:])
}

// TestMigrateLazyDestinationKilled kills rtcr serve while the copy runs
// with pages missing: the copy dies with it (it cannot go on), rtcr
// migrate fails saying the source runs on, and the source runs on with
// its memory intact.
func TestMigrateLazyDestinationKilled(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	np.throttle(np.b, "80mbit")
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	w := startMemWriter(t, np, 64)
	cmd, out := startLazy(t, np, srv, w, token)
	_ = srv.cmd.Process.Kill()
	<-srv.done
	code := exitCode(t, cmd.Wait())
	if code != 1 || !strings.Contains(out.String(), "the source runs on") {
		t.Errorf("rtcr migrate --lazy after the destination died: exit %d, %q", code, out.String())
	}
	t.Logf("rtcr migrate --lazy:\n%s", out.String())
	waitOnlySource(t, w, srv)
}

// TestMigrateLazySourceKilled kills rtcr migrate --lazy while the copy
// runs with pages missing: the destination kills its copy and keeps
// nothing; the source, released by the kernel when its tracer died, runs
// on with its memory intact.
func TestMigrateLazySourceKilled(t *testing.T) {
	testutil.RequireRoot(t)
	np := newNetPair(t)
	np.throttle(np.b, "80mbit")
	token := writeToken(t, t.TempDir())
	srv := startServe(t, np, filepath.Join(t.TempDir(), "images"), token)
	w := startMemWriter(t, np, 64)
	cmd, _ := startLazy(t, np, srv, w, token)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	testutil.WaitForFile(t, srv.log, "could not go on and was killed", 60*time.Second)
	t.Logf("serve:\n%s", readFile(srv.log))
	waitOnlySource(t, w, srv)
	if got := srv.entries(t); len(got) != 0 {
		t.Errorf("serve's directory holds %v, want nothing", got)
	}
}

// TestPostCopyImageRefused: a post-copy dump leaves private anonymous
// memory out of the image (recorded as remote spans) and a plain restore,
// or CheckImage, refuses such an image before anything is created.
func TestPostCopyImageRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "memwriter", false), "1\n", "16", "10")
	dir := filepath.Join(t.TempDir(), "img")
	opts := rtcr.PostCopyDumpForTest(rtcr.DumpOptions{Pid: tg.Pid, Dir: dir, LeaveRunning: true})
	if _, err := rtcr.Dump(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !c.RemotePages || c.RemoteSpans() < 16*256 {
		t.Errorf("post-copy image: remote pages %v, %d pages in remote spans, want at least %d", c.RemotePages, c.RemoteSpans(), 16*256)
	}
	if c.Processes[0].PageFileSize >= 1<<20 {
		t.Errorf("post-copy image: page file of %d bytes, want the 16 MiB left out", c.Processes[0].PageFileSize)
	}
	if err := rtcr.CheckImage(dir); !errors.Is(err, image.ErrRemotePages) {
		t.Errorf("CheckImage of a post-copy image: %v, want ErrRemotePages", err)
	}
	if _, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir}); !errors.Is(err, image.ErrRemotePages) {
		t.Errorf("Restore of a post-copy image: %v, want ErrRemotePages", err)
	}
	if _, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, Lazy: true}); !errors.Is(err, image.ErrRemotePages) {
		t.Errorf("lazy Restore of a post-copy image without its source: %v, want ErrRemotePages", err)
	}
}
