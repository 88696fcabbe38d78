package rtcr_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// The regions of testdata/shmwriter.c.
const (
	regS = iota // shared anonymous memory
	regF        // private file mapping
	regM        // memfd, shared
	regY        // SysV segment
)

// shmWriter drives testdata/shmwriter.c: a parent and its child writing
// shared anonymous memory, a private file mapping, a memfd (through the
// mapping and with pwrite) and a SysV segment between checkpoints, with a
// model of every page's stamp.
type shmWriter struct {
	*writer // for dump; its round counts the command files
	child   int
	addr    [4]uint64
	view2   uint64 // a second view of S, once made
	npages  int
	stamps  [4][]int64
}

func startShmWriter(t *testing.T, npages int) *shmWriter {
	t.Helper()
	tg := start(t, testutil.BuildC(t, "shmwriter", false), strconv.Itoa(npages))
	testutil.WaitForFile(t, tg.out, "cready\n", 30*time.Second)
	testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
	w := &shmWriter{writer: &writer{target: tg, ck: t.TempDir()}, npages: npages}
	for _, l := range strings.Split(tg.output(), "\n") {
		if strings.HasPrefix(l, "ready ") {
			if _, err := fmt.Sscanf(l, "ready %x %x %x %x", &w.addr[0], &w.addr[1], &w.addr[2], &w.addr[3]); err != nil {
				t.Fatalf("shmwriter output %q: %v", l, err)
			}
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tg.pid, tg.pid))
	if err != nil || len(strings.Fields(string(b))) != 1 {
		t.Fatalf("children of %d: %q %v", tg.pid, b, err)
	}
	w.child, _ = strconv.Atoi(strings.Fields(string(b))[0])
	t.Cleanup(func() { _ = syscallKill(w.child) })
	for r := range w.stamps {
		w.stamps[r] = make([]int64, npages)
	}
	for p := range npages {
		w.stamps[regF][p] = 7
	}
	return w
}

// run sends one round of lines to both processes and waits until both
// ran it; the model follows.
func (w *shmWriter) run(lines ...string) {
	w.t.Helper()
	w.round++
	n := w.round
	for _, l := range lines {
		f := strings.Fields(strings.TrimPrefix(l, "c "))
		r := strings.IndexByte("SFMY", f[1][0])
		for _, s := range f[2:] {
			p, _ := strconv.Atoi(s)
			if f[0] == "drop" {
				w.stamps[r][p] = 7
			} else {
				w.stamps[r][p] = int64(n)
			}
		}
	}
	w.send("", n, lines...)
	w.waitFor(fmt.Sprintf("\ndone %d\n", n))
	w.waitFor(fmt.Sprintf("\ncdone %d\n", n))
}

// pages returns the pages of region r that process pid of c holds at
// depth 0 and at a greater depth.
func (w *shmWriter) pages(c *image.Checkpoint, pid, r int) (here, parents []int) {
	w.t.Helper()
	p := c.ProcessByPid(pid)
	if p == nil {
		w.t.Fatalf("no process %d in the image", pid)
	}
	bases := []uint64{w.addr[r]}
	if r == regS && w.view2 != 0 {
		bases = append(bases, w.view2)
	}
	size := uint64(w.npages) * image.PageSize
	for _, v := range p.VMAs {
		for _, run := range v.Pages {
			for k := uint64(0); k < run.Count; k++ {
				a := run.Addr + k*image.PageSize
				base := uint64(0)
				for _, b := range bases {
					if a >= b && a < b+size {
						base = b
					}
				}
				if base == 0 {
					continue
				}
				if i := int((a - base) / image.PageSize); run.Depth == 0 {
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

// want checks that process pid of c holds exactly the pages here of
// region r itself and nparents from its parents.
func (w *shmWriter) want(c *image.Checkpoint, pid, r int, nparents int, here ...int) {
	w.t.Helper()
	got, parents := w.pages(c, pid, r)
	sort.Ints(here)
	if fmt.Sprint(got) != fmt.Sprint(here) || len(parents) != nparents {
		w.t.Fatalf("region %c of %d: pages %v here and %d in parents, want %v and %d; the previous dump's log:\n%s\nthis dump's log:\n%s", "SFMY"[r], pid, got, len(parents), here, nparents, w.prevLog, w.log.String())
	}
}

// restoreAndVerify kills both processes, restores dir and has the parent
// check every page against its stamp and the sums against the model.
func (w *shmWriter) restoreAndVerify(dir string) {
	w.t.Helper()
	// As subreaper the test reaps the orphaned child itself: left to
	// this machine's init, a zombie may hold its pid for a long time.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		w.t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	_ = syscallKill(w.child)
	w.kill()
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	w.done = false
	for deadline := time.Now().Add(30 * time.Second); !pidFree(w.child) && time.Now().Before(deadline); {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(w.child, &ws, unix.WNOHANG, nil)
		time.Sleep(10 * time.Millisecond)
	}
	w.restore(dir)
	defer syscallKill(w.child)
	w.send("", w.round+1, "verify")
	var sums [4]int64
	for r := range sums {
		for p, s := range w.stamps[r] {
			sums[r] += int64(p+1) * s
		}
	}
	want := fmt.Sprintf("OK %d %d %d %d\n", sums[0], sums[1], sums[2], sums[3])
	if code := w.wait(60 * time.Second); code != 0 || !strings.Contains(w.output(), want) {
		w.t.Fatalf("restored shmwriter: exit %d, want %q in its output:\n%s", code, want, w.output())
	}
}

func pageList(from, to int) string {
	var b strings.Builder
	for p := from; p < to; p++ {
		fmt.Fprintf(&b, " %d", p)
	}
	return b.String()
}

// TestIncrementalSharedMemory: shared anonymous memory and a SysV segment
// written through the forked child's view between checkpoints, a private
// file mapping written and a page of it dropped by the parent, a memfd
// written through its mapping and with pwrite(2): an increment holds
// exactly the written pages of the shared memory (in the parent, the first
// view) and of the private file mapping, and a chain of several rounds
// restores to the right bytes everywhere (the memfd's contents are saved
// whole by every dump, so pwrite is caught).
func TestIncrementalSharedMemory(t *testing.T) {
	testutil.RequireRoot(t)
	const n = 64
	w := startShmWriter(t, n)
	all := pageList(0, n)
	w.run("w S"+all, "w F"+all, "w M"+all, "w Y"+all)
	c := w.dump("1", "")
	w.want(c, w.pid, regS, 0, intRange(0, n)...)
	w.want(c, w.pid, regF, 0, intRange(0, n)...)
	w.want(c, w.pid, regY, 0, intRange(0, n)...)

	w.run("c w S 3 5", "c w Y 2", "w F 4", "drop F 9", "pw M 6", "w M 8")
	c = w.dump("2", "1")
	w.want(c, w.pid, regS, n-2, 3, 5)
	w.want(c, w.pid, regY, n-1, 2)
	w.want(c, w.pid, regF, n-2, 4)
	w.want(c, w.child, regS, 0)
	w.want(c, w.child, regY, 0)

	// Writes through both views, and the parent's own.
	w.run("c w S 10 11", "w S 11 12", "w Y 20", "c w Y 21", "w F 9", "pw M 1 2")
	c = w.dump("3", "2")
	w.want(c, w.pid, regS, n-3, 10, 11, 12)
	w.want(c, w.pid, regY, n-2, 20, 21)
	w.want(c, w.pid, regF, n-1, 9)

	// A round without writes to shared memory, then more.
	w.run("w F 30", "w M 31")
	c = w.dump("4", "3")
	w.want(c, w.pid, regS, n)
	w.want(c, w.pid, regY, n)
	w.want(c, w.pid, regF, n-1, 30)
	w.run("c w S 63 0", "drop F 30", "c pw M 40", "c w Y 63")
	c = w.dump("5", "4")
	w.want(c, w.pid, regS, n-2, 0, 63)
	w.want(c, w.pid, regY, n-1, 63)
	w.want(c, w.pid, regF, n-1)
	w.restoreAndVerify(filepath.Join(w.ck, "5"))
}

func intRange(from, to int) []int {
	var out []int
	for p := from; p < to; p++ {
		out = append(out, p)
	}
	return out
}

// TestIncrementalSharedViews: a second view of shared anonymous memory
// mapped since the last checkpoint is not tracked yet, so the next
// increment saves the object whole; then writes through either view, and
// the child's, are exactly the pages of the increments after.
func TestIncrementalSharedViews(t *testing.T) {
	testutil.RequireRoot(t)
	const n = 32
	w := startShmWriter(t, n)
	w.run("w S" + pageList(0, n))
	w.dump("1", "")
	w.run("view S")
	out := w.output()
	i := strings.LastIndex(out, "\nview ")
	if i < 0 {
		t.Fatalf("no view address in %q", out)
	}
	if _, err := fmt.Sscanf(out[i+1:], "view %x", &w.view2); err != nil {
		t.Fatal(err)
	}
	w.run("c w S 1")
	c := w.dump("2", "1")
	w.want(c, w.pid, regS, 0, intRange(0, n)...)
	w.run("w2 S 7", "c w S 9")
	c = w.dump("3", "2")
	w.want(c, w.pid, regS, n-2, 7, 9)
	w.want(c, w.child, regS, 0)
	w.run("w2 S 8")
	c = w.dump("4", "3")
	w.want(c, w.pid, regS, n-1, 8)
	w.restoreAndVerify(filepath.Join(w.ck, "4"))
}

// TestIncrementalSharedSeries: periodic checkpoints (Checkpointer, 2
// kept) of a parent and child writing shared anonymous memory, a SysV
// segment and a private file mapping: every increment holds exactly the
// pages written since, the merges keep shared pages of removed images,
// and latest restores to the right bytes.
func TestIncrementalSharedSeries(t *testing.T) {
	testutil.RequireRoot(t)
	const n = 48
	w := startShmWriter(t, n)
	all := pageList(0, n)
	w.run("w S"+all, "w Y"+all, "w F"+all)
	ck := filepath.Join(w.ck, "series")
	cp, err := rtcr.NewCheckpointer(w.pid, rtcr.CheckpointerOptions{Dir: ck, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	rng := rand.New(rand.NewPCG(11, uint64(time.Now().UnixNano())))
	for i := 1; i <= 6; i++ {
		var s, y, f []int
		if i > 1 {
			s, y, f = []int{rng.IntN(n / 2), n/2 + rng.IntN(n/2)}, []int{rng.IntN(n)}, []int{rng.IntN(n)}
			w.run(fmt.Sprintf("c w S %d %d", s[0], s[1]), fmt.Sprintf("w Y %d", y[0]), fmt.Sprintf("c w Y %d", y[0]), fmt.Sprintf("w F %d", f[0]))
		}
		st, err := cp.Checkpoint(context.Background())
		if err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		t.Logf("checkpoint %s: parent %q, %d KiB, %d pages in parents, notes %q", st.Dir, st.Parent, st.PageBytes>>10, st.ParentPages, st.Notes)
		if (i == 1) != (st.Parent == "") {
			t.Fatalf("checkpoint %d: parent %q (notes %q): want the first full, the next ones incremental", i, st.Parent, st.Notes)
		}
		if i == 1 {
			continue
		}
		c, err := image.ReadManifest(st.Dir)
		if err != nil {
			t.Fatal(err)
		}
		w.want(c, w.pid, regS, n-2, s...)
		w.want(c, w.pid, regY, n-1, y...)
		w.want(c, w.pid, regF, n-1, f...)
	}
	w.restoreAndVerify(filepath.Join(ck, "latest"))
}
