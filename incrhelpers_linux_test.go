package rtcr_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/inspect"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// writer drives testdata/dirtywriter.c: a region of pages written,
// dropped and remapped on command between checkpoints, with a model of
// every page's stamp (see the program's comment).
type writer struct {
	*target
	base   uint64
	npages int
	round  int     // the last command round run
	stamps []int64 // the model: 0 zero, -1 unmapped, else the round that wrote it
	ck     string  // directory holding the images ck/0, ck/1 …
	// log is the last dump's log (debug and up), prevLog the one before,
	// for a failure's message.
	log     strings.Builder
	prevLog string
}

func startWriter(t *testing.T, npages, threads int) *writer {
	t.Helper()
	tg := start(t, testutil.BuildC(t, "dirtywriter", false), strconv.Itoa(npages), strconv.Itoa(threads))
	testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
	var base uint64
	if _, err := fmt.Sscanf(tg.output(), "ready %x", &base); err != nil {
		t.Fatalf("writer output %q: %v", tg.output(), err)
	}
	w := &writer{target: tg, base: base, npages: npages, stamps: make([]int64, npages), ck: t.TempDir()}
	for p := range w.stamps {
		w.stamps[p] = int64(1000000 + p%7)
	}
	return w
}

// run sends one round of command lines to the program (prefix "c": to
// its forked child) and waits until it is done; the model follows the
// parent's writes, drops, maps and moves.
func (w *writer) run(prefix string, lines ...string) {
	w.t.Helper()
	w.round++
	n := w.round
	if prefix == "" {
		for _, l := range lines {
			w.model(l, n)
		}
	}
	w.send(prefix, n, lines...)
	// At a line's start: the parent's "done N" is within a child's "cdone N".
	w.waitFor(fmt.Sprintf("\n%sdone %d\n", prefix, n))
}

// send writes the command file of round n, atomically.
func (w *writer) send(prefix string, n int, lines ...string) {
	w.t.Helper()
	name := filepath.Join(w.dir, fmt.Sprintf("%scmd-%d", prefix, n))
	tmp := filepath.Join(w.dir, "tmp-cmd")
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		w.t.Fatal(err)
	}
}

// waitFor waits until the program's output holds s.
func (w *writer) waitFor(s string) {
	w.t.Helper()
	testutil.WaitForFile(w.t, w.out, s, 60*time.Second)
}

func (w *writer) model(l string, n int) {
	f := strings.Fields(l)
	num := func(i int) int { v, _ := strconv.Atoi(f[i]); return v }
	switch f[0] {
	case "w":
		for i := 1; i < len(f); i++ {
			w.stamps[num(i)] = int64(n)
		}
	case "drop", "map":
		for p := num(1); p < num(1)+num(2); p++ {
			w.stamps[p] = 0
		}
	case "unmap":
		for p := num(1); p < num(1)+num(2); p++ {
			w.stamps[p] = -1
		}
	case "move":
		tmp := append([]int64(nil), w.stamps[num(1):num(1)+num(2)]...)
		for p := num(1); p < num(1)+num(2); p++ {
			w.stamps[p] = -1
		}
		copy(w.stamps[num(3):], tmp)
	}
}

// sum is what the program's verify prints for the model.
func (w *writer) sum() int64 {
	var s int64
	for p, v := range w.stamps {
		s += int64(p+1) * v
	}
	return s
}

// dump checkpoints the writer with --track-mem and -R into ck/NAME, as an
// increment of ck/PARENT unless parent is "".
func (w *writer) dump(name, parent string) *image.Checkpoint {
	w.t.Helper()
	dir := filepath.Join(w.ck, name)
	// The log of the previous dump is kept beside this one's: what it
	// failed to protect shows in this one's increment.
	w.prevLog = w.log.String()
	w.log.Reset()
	opts := rtcr.DumpOptions{Pid: w.pid, Dir: dir, LeaveRunning: true, TrackMem: true,
		Logger: slog.New(slog.NewTextHandler(&w.log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if parent != "" {
		opts.Parent = filepath.Join("..", parent)
	}
	st, err := rtcr.Dump(context.Background(), opts)
	if err != nil {
		w.t.Fatalf("dump %s: %v", name, err)
	}
	w.t.Logf("dump %s: %d KiB here, %d pages in parents, frozen %v", name, st.PageBytes>>10, st.ParentPages, st.Freeze)
	c, err := image.ReadManifest(dir)
	if err != nil {
		w.t.Fatalf("read back %s: %v", name, err)
	}
	if err := inspect.Write(io.Discard, dir, c); err != nil {
		w.t.Fatalf("inspect %s: %v", name, err)
	}
	return c
}

// regionPages returns the pages of the region (by index) that process pid
// of c holds in its own page file at depth 0, and the others (in a parent
// image, or another process's page file: shared copy-on-write).
func (w *writer) regionPages(c *image.Checkpoint, pid int) (here, parents []int) {
	w.t.Helper()
	p := c.ProcessByPid(pid)
	if p == nil {
		w.t.Fatalf("no process %d in the image", pid)
	}
	end := w.base + uint64(w.npages)*image.PageSize
	for _, v := range p.VMAs {
		for _, r := range v.Pages {
			for k := uint64(0); k < r.Count; k++ {
				a := r.Addr + k*image.PageSize
				if a < w.base || a >= end {
					continue
				}
				i := int((a - w.base) / image.PageSize)
				if r.Depth == 0 && r.Pid == 0 {
					here = append(here, i)
				} else {
					parents = append(parents, i)
				}
			}
		}
	}
	sort.Ints(here)
	sort.Ints(parents)
	return here, parents
}

// wantPages checks that the image holds exactly the pages want of the
// region itself (not in a parent).
func (w *writer) wantPages(c *image.Checkpoint, pid int, want ...int) {
	w.t.Helper()
	here, _ := w.regionPages(c, pid)
	sort.Ints(want)
	if fmt.Sprint(here) != fmt.Sprint(want) {
		w.t.Fatalf("increment holds region pages %v, want exactly %v", here, want)
	}
}

// restoreAndVerify kills the writer (and the other pids given), restores
// dir, which must be the newest image, and has the restored program check
// every page against its stamps, and the stamps against the model.
func (w *writer) restoreAndVerify(dir string, others ...int) {
	w.t.Helper()
	for _, pid := range others {
		_ = syscallKill(pid)
	}
	w.kill()
	w.done = false
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range others {
		for !pidFree(pid) && time.Now().Before(deadline) {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil) // a zombie reparented to us
			time.Sleep(10 * time.Millisecond)
		}
	}
	w.restore(dir)
	// The restored children are the caller's to end: not left running.
	defer func() {
		for _, pid := range others {
			_ = syscallKill(pid)
		}
	}()
	w.send("", w.round+1, "verify")
	want := fmt.Sprintf("OK %d\n", w.sum())
	if code := w.wait(60 * time.Second); code != 0 || !strings.Contains(w.output(), want) {
		w.t.Fatalf("restored writer: exit %d, want %q in its output:\n%s", code, want, w.output())
	}
}

// sharedWith counts the pages of process pid of c held by the page file of
// process owner (shared with it copy-on-write).
func sharedWith(c *image.Checkpoint, pid, owner int) int {
	n := 0
	for _, v := range c.ProcessByPid(pid).VMAs {
		for _, r := range v.Pages {
			if r.Pid == owner {
				n += int(r.Count)
			}
		}
	}
	return n
}
