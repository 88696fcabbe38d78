package rtcr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestCheckpointerSeries drives a writer through rtcr.Checkpointer with
// Keep 3 for 10 rounds of random writes: the first checkpoint is full,
// every next one an increment holding exactly the pages written since,
// each removal merges the oldest image into its child (the oldest kept is
// full, the chain behind the others short); Close ends tracking (with a
// last increment); then latest and the oldest kept restore to the right
// bytes.
func TestCheckpointerSeries(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 64, 1)
	ck := filepath.Join(w.ck, "series")
	cp, err := rtcr.NewCheckpointer(w.pid, rtcr.CheckpointerOptions{Dir: ck, Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	rounds := map[int]int{} // checkpoint number -> the writer's round then
	sums := map[int]int64{} // and its verify sum
	rng := rand.New(rand.NewPCG(10, uint64(time.Now().UnixNano())))
	merged := 0
	for i := 1; i <= 10; i++ {
		set := map[int]bool{}
		for len(set) < 3 {
			set[rng.IntN(64)] = true
		}
		var pages []int
		line := "w"
		for p := range set {
			pages = append(pages, p)
			line += " " + strconv.Itoa(p)
		}
		w.run("", line)
		st, err := cp.Checkpoint(context.Background())
		if err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		n, _ := strconv.Atoi(filepath.Base(st.Dir))
		rounds[n], sums[n] = w.round, w.sum()
		t.Logf("checkpoint %d: parent %q, %d KiB, %d pages in parents, frozen %v, notes %q", n, st.Parent, st.PageBytes>>10, st.ParentPages, st.Freeze, st.Notes)
		if (i == 1) != (st.Parent == "") {
			t.Fatalf("checkpoint %d: parent %q (notes %q): want the first full, the next ones incremental", n, st.Parent, st.Notes)
		}
		c, err := image.ReadManifest(st.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if i > 1 {
			w.wantPages(c, w.pid, pages...)
		}
		for _, note := range st.Notes {
			if strings.Contains(note, "merged into") {
				merged++
			} else {
				t.Fatalf("checkpoint %d: note %q", n, note)
			}
		}
	}
	if merged != 7 {
		t.Fatalf("%d merges for 10 checkpoints with 3 kept, want 7", merged)
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	if hasUffdWP(t, w.pid) {
		t.Fatal("mappings still registered after Close")
	}
	rounds[11], sums[11] = w.round, w.sum()
	for n := 1; n <= 11; n++ {
		c, err := image.ReadManifest(filepath.Join(ck, strconv.Itoa(n)))
		kept := n >= 9
		if (err == nil) != kept {
			t.Fatalf("checkpoint %d: kept %v, read %v", n, kept, err)
		}
		if kept && c.ChainLen != n-9 {
			t.Fatalf("checkpoint %d has %d images behind it, want %d", n, c.ChainLen, n-9)
		}
	}
	w.restoreAndVerify(filepath.Join(ck, "latest"))
	restoreRound(t, w, filepath.Join(ck, "9"), rounds[9], sums[9])
}

// restoreRound restores dir, an image of the writer taken after round r
// (whose verify sum was sum), and has it verify its pages: the command
// files of later rounds are removed first, so the restored program's next
// command is "verify".
func restoreRound(t *testing.T, w *writer, dir string, r int, sum int64) {
	t.Helper()
	w.kill()
	for n := r + 1; n <= w.round+1; n++ {
		_ = os.Remove(filepath.Join(w.dir, fmt.Sprintf("cmd-%d", n)))
	}
	before := len(w.output())
	w.done = false
	w.restore(dir)
	w.send("", r+1, "verify")
	want := fmt.Sprintf("OK %d\n", sum)
	if code := w.wait(60 * time.Second); code != 0 || !strings.Contains(w.output()[before:], want) {
		t.Fatalf("restored %s: exit %d, want %q in its output:\n%s", dir, code, want, w.output()[before:])
	}
}

// TestCheckpointerFallback: a checkpoint that fails is skipped (latest
// stays), and the next one is a full tracked image saying why; the one
// after is an increment again, and restores.
func TestCheckpointerFallback(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 64, 1)
	ck := filepath.Join(w.ck, "series")
	cp, err := rtcr.NewCheckpointer(w.pid, rtcr.CheckpointerOptions{Dir: ck, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if _, err := cp.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.run("", "w 1 2")
	rtcr.SetDumpMemoryHookForTest(func(int) error { return errors.New("injected failure") })
	_, err = cp.Checkpoint(context.Background())
	rtcr.SetDumpMemoryHookForTest(nil)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("checkpoint with a failing hook: %v", err)
	}
	if link, _ := os.Readlink(filepath.Join(ck, "latest")); link != "1" {
		t.Fatalf("latest -> %q after a failed checkpoint, want 1", link)
	}
	w.run("", "w 3")
	st, err := cp.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Parent != "" || len(st.Notes) == 0 || !strings.Contains(st.Notes[0], "checkpoint 2 failed") {
		t.Fatalf("checkpoint after a failed one: parent %q, notes %q; want a full image saying why", st.Parent, st.Notes)
	}
	if filepath.Base(st.Dir) != "3" {
		t.Fatalf("checkpoint after the failed 2 went to %s", st.Dir)
	}
	w.run("", "w 4")
	st, err = cp.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Parent == "" {
		t.Fatalf("no increment after the full image (notes %q)", st.Notes)
	}
	c, err := image.ReadManifest(st.Dir)
	if err != nil {
		t.Fatal(err)
	}
	w.wantPages(c, w.pid, 4)
	w.restoreAndVerify(st.Dir)
}
