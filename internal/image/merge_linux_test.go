package image

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// heapStart is where the synthetic images' heap begins.
const heapStart = 0x1000000

// synthImage writes an image into dir whose heap (8 pages) holds, for each
// page, either content of its own (own[i] != 0: the page is filled with
// that byte) or a run into an ancestor (from[i] = depth, off[i] = its
// offset there). parent links it (nil: a full image).
func synthImage(t *testing.T, dir string, parent *Checkpoint, parentDir string, own []byte, from []int, off []int64) *Checkpoint {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := sampleCheckpoint()
	c.ID = NewID()
	p := &c.Processes[0]
	p.VMAs[0].Pages = nil
	v := &p.VMAs[1]
	v.End = heapStart + 8*PageSize
	p.MM.Brk = v.End
	v.Pages = nil
	var data []byte
	for i := 0; i < 8; i++ {
		addr := uint64(heapStart + i*PageSize)
		r := PageRun{Addr: addr, Count: 1}
		if own[i] != 0 {
			r.FileOff = int64(len(data))
			data = append(data, bytes.Repeat([]byte{own[i]}, PageSize)...)
		} else {
			r.Depth, r.FileOff = from[i], off[i]
		}
		// Join with the previous run when contiguous in the same file.
		if n := len(v.Pages); n > 0 {
			q := &v.Pages[n-1]
			if q.Depth == r.Depth && q.Addr+q.Count*PageSize == r.Addr && q.FileOff+int64(q.Count)*PageSize == r.FileOff {
				q.Count++
				continue
			}
		}
		v.Pages = append(v.Pages, r)
	}
	p.PageFile = PageFileName(NewID()[:16], p.Pid)
	pw := NewPageWriter(&bytes.Buffer{})
	pw.Write(data)
	p.PageFileSize, p.PageChecksums = int64(len(data)), pw.Checksums()
	if err := os.WriteFile(filepath.Join(dir, p.PageFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if parent != nil {
		c.Parent = &ParentLink{Dir: parentDir, ID: parent.ID, Sum: parent.SumHex()}
		c.ChainLen = parent.ChainLen + 1
	}
	if err := WriteManifest(dir, c); err != nil {
		t.Fatal(err)
	}
	back, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// resolveHeap reads the heap pages of the image in dir through its chain
// (checking every link as restore does) and returns the first byte of
// each page.
func resolveHeap(t *testing.T, dir string) []byte {
	t.Helper()
	c, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := [][]byte{}
	cur, curDir := c, dir
	for depth := 0; ; depth++ {
		data, closeFn, err := OpenPages(curDir, &cur.Processes[0])
		if err != nil {
			t.Fatalf("%s: %v", curDir, err)
		}
		defer closeFn()
		files = append(files, data)
		if depth == c.ChainLen {
			break
		}
		pdir := ParentDir(curDir, cur.Parent)
		pc, err := ReadManifest(pdir)
		if err != nil {
			t.Fatalf("%s: %v", pdir, err)
		}
		if err := CheckChainLink(cur, pc, pdir); err != nil {
			t.Fatal(err)
		}
		if err := CheckAncestorRuns(&c.Processes[0], depth+1, pc, pdir); err != nil {
			t.Fatal(err)
		}
		cur, curDir = pc, pdir
	}
	var out []byte
	for _, r := range c.Processes[0].VMAs[1].Pages {
		for i := uint64(0); i < r.Count; i++ {
			pg := files[r.Depth][r.FileOff+int64(i)*PageSize:][:PageSize]
			if !bytes.Equal(pg, bytes.Repeat(pg[:1], PageSize)) {
				t.Fatalf("%s: page at %#x not uniform", dir, r.Addr+i*PageSize)
			}
			out = append(out, pg[0])
		}
	}
	return out
}

// synthSeries writes the series O (full) → C → D → E of the test into
// root and returns the directories.
func synthSeries(t *testing.T, root string) []string {
	dirs := []string{filepath.Join(root, "1"), filepath.Join(root, "2"), filepath.Join(root, "3"), filepath.Join(root, "4")}
	z := make([]int, 8)
	zo := make([]int64, 8)
	o := synthImage(t, dirs[0], nil, "", []byte("ABCDEFGH"), z, zo)
	// C writes pages 0 and 3; the rest from O at its offsets.
	pg := func(i int) int64 { return int64(i) * PageSize }
	c := synthImage(t, dirs[1], o, "../1", []byte{'a', 0, 0, 'd', 0, 0, 0, 0},
		[]int{0, 1, 1, 0, 1, 1, 1, 1}, []int64{0, pg(1), pg(2), 0, pg(4), pg(5), pg(6), pg(7)})
	// D writes page 5; 0 and 3 from C (offsets 0, 1 page), the rest from O.
	d := synthImage(t, dirs[2], c, "../2", []byte{0, 0, 0, 0, 0, 'f', 0, 0},
		[]int{1, 2, 2, 1, 2, 0, 2, 2}, []int64{0, pg(1), pg(2), pg(1), pg(4), 0, pg(6), pg(7)})
	// E writes pages 1 and 2; 0, 3 from C; 5 from D; 4, 6, 7 from O.
	synthImage(t, dirs[3], d, "../3", []byte{0, 'b', 'c', 0, 0, 0, 0, 0},
		[]int{2, 0, 0, 2, 3, 1, 3, 3}, []int64{0, 0, pg(1), pg(1), pg(4), 0, pg(6), pg(7)})
	return dirs
}

// TestMerge merges the full image O into its child C of the chain
// O → C → D → E: C becomes full, D and E lose a link, and every image
// still reads the same bytes through its (checked) chain once O is gone.
func TestMerge(t *testing.T) {
	for _, base := range []bool{false, true} {
		t.Run(map[bool]string{false: "copy", true: "base"}[base], func(t *testing.T) {
			mergeBaseOff = !base
			defer func() { mergeBaseOff = false }()
			testMerge(t, base)
		})
	}
}

// testMerge is TestMerge merging the copying way or into the base.
func testMerge(t *testing.T, base bool) {
	dirs := synthSeries(t, t.TempDir())
	want := map[string]string{dirs[1]: "aBCdEFGH", dirs[2]: "aBCdEfGH", dirs[3]: "abcdEfGH"}
	for d, w := range want {
		if got := string(resolveHeap(t, d)); got != w {
			t.Fatalf("before the merge %s reads %q, want %q", d, got, w)
		}
	}
	st, err := Merge(dirs[0], dirs[1:])
	if err != nil {
		t.Fatal(err)
	}
	wantPages := map[bool]uint64{false: 6, true: 2}[base] // copied: from O, or C's own
	if st.Child != dirs[1] || st.Pages != wantPages || st.Base != base || len(st.Rewritten) != 2 {
		t.Fatalf("merge stats %+v", st)
	}
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	for d, w := range want {
		if got := string(resolveHeap(t, d)); got != w {
			t.Fatalf("after the merge %s reads %q, want %q", d, got, w)
		}
	}
	for i, d := range dirs[1:] {
		c, err := ReadManifest(d)
		if err != nil {
			t.Fatal(err)
		}
		if c.ChainLen != i || (c.Parent == nil) != (i == 0) {
			t.Fatalf("%s: chain %d, parent %v", d, c.ChainLen, c.Parent)
		}
	}
	ents, _ := os.ReadDir(dirs[1])
	if len(ents) != 2 {
		t.Fatalf("%s holds %d files, want the manifest and one page file", dirs[1], len(ents))
	}
	// Merging on: C into D, then D into E.
	for i := 1; i < 3; i++ {
		if _, err := Merge(dirs[i], dirs[i+1:]); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(dirs[i])
	}
	if got := string(resolveHeap(t, dirs[3])); got != "abcdEfGH" {
		t.Fatalf("E alone reads %q", got)
	}
	if c, _ := ReadManifest(dirs[3]); c.ChainLen != 0 || c.Parent != nil {
		t.Fatalf("E is not full: chain %d", c.ChainLen)
	}
}

// TestMergeRefused refuses a merge where a later image takes a page from
// the old one that the child does not (not an image rtcr writes), and
// changes nothing.
func TestMergeRefused(t *testing.T) {
	mergeBaseOff = true // merged into the base, E reads what it read before
	defer func() { mergeBaseOff = false }()
	dirs := synthSeries(t, t.TempDir())
	d, err := ReadManifest(dirs[3])
	if err != nil {
		t.Fatal(err)
	}
	// E takes page 0 from O at offset 0, where C wrote its own page 0.
	d.Processes[0].VMAs[1].Pages[0] = PageRun{Addr: heapStart, Count: 1, FileOff: 0, Depth: 3}
	if err := WriteManifest(dirs[3], d); err != nil {
		t.Fatal(err)
	}
	var before []string
	for _, dir := range dirs {
		c, err := ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, c.SumHex())
	}
	_, err = Merge(dirs[0], dirs[1:])
	if err == nil || !strings.Contains(err.Error(), "does not take it from") {
		t.Fatalf("merge: %v, want a refusal", err)
	}
	for i, dir := range dirs {
		c, _ := ReadManifest(dir)
		if c.SumHex() != before[i] {
			t.Fatalf("%s changed by a refused merge", dir)
		}
	}
	ents, _ := os.ReadDir(dirs[1])
	if len(ents) != 2 {
		t.Fatalf("%s holds %d files after a refused merge", dirs[1], len(ents))
	}
}

// TestMergeNoChild leaves images that do not descend from the old one
// alone.
func TestMergeNoChild(t *testing.T) {
	root := t.TempDir()
	z := make([]int, 8)
	zo := make([]int64, 8)
	synthImage(t, filepath.Join(root, "1"), nil, "", []byte("ABCDEFGH"), z, zo)
	synthImage(t, filepath.Join(root, "2"), nil, "", []byte("abcdefgh"), z, zo)
	st, err := Merge(filepath.Join(root, "1"), []string{filepath.Join(root, "2"), filepath.Join(root, "nothing")})
	if err != nil || st.Child != "" {
		t.Fatalf("merge: %+v %v", st, err)
	}
}

// TestMergeInterrupted stops a merge after its first rename, as a crash
// would: the child reads right, the next image is refused (its parent's
// checksum changed), and ResumeMerge finishes the merge from the journal
// so that every image reads right without the old one.
func TestMergeInterrupted(t *testing.T) {
	dirs := synthSeries(t, t.TempDir())
	mergeCrashHook = func(i int) error {
		if i == 1 {
			return os.ErrDeadlineExceeded
		}
		return nil
	}
	_, err := Merge(dirs[0], dirs[1:])
	mergeCrashHook = nil
	if err == nil {
		t.Fatal("interrupted merge reported no error")
	}
	if got := string(resolveHeap(t, dirs[1])); got != "aBCdEFGH" {
		t.Fatalf("child after the interrupted merge reads %q", got)
	}
	d, _ := ReadManifest(dirs[2])
	c, _ := ReadManifest(dirs[1])
	if err := CheckChainLink(d, c, dirs[1]); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("image after the switched child: link %v, want a checksum mismatch", err)
	}
	resumed, err := ResumeMerge(dirs[0], dirs[1:])
	if err != nil || !resumed {
		t.Fatalf("resume: %v %v", resumed, err)
	}
	os.RemoveAll(dirs[0])
	want := map[string]string{dirs[1]: "aBCdEFGH", dirs[2]: "aBCdEfGH", dirs[3]: "abcdEfGH"}
	for d, w := range want {
		if got := string(resolveHeap(t, d)); got != w {
			t.Fatalf("after the resumed merge %s reads %q, want %q", d, got, w)
		}
	}
}

// TestFinishInterruptedMerges: after a merge stopped after its first
// rename, the image of the series whose link broke is repaired by
// FinishInterruptedMerges on its series (what a restore of it does), the
// series' `latest` link beside the checkpoints; a journal naming a
// directory outside the series is refused and changes nothing.
func TestFinishInterruptedMerges(t *testing.T) {
	root := t.TempDir()
	dirs := synthSeries(t, root)
	mergeCrashHook = func(i int) error {
		if i == 1 {
			return os.ErrDeadlineExceeded
		}
		return nil
	}
	_, err := Merge(dirs[0], dirs[1:])
	mergeCrashHook = nil
	if err == nil {
		t.Fatal("interrupted merge reported no error")
	}
	d, _ := ReadManifest(dirs[2])
	c, _ := ReadManifest(dirs[1])
	if err := CheckChainLink(d, c, dirs[1]); !errors.Is(err, ErrParentChanged) {
		t.Fatalf("image after the switched child: link %v, want ErrParentChanged", err)
	}
	journal := filepath.Join(dirs[0], MergeJournal)
	good, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journal, append(good, []byte("/etc\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if done, err := FinishInterruptedMerges(root, uint32(os.Geteuid())); len(done) != 0 || !errors.Is(err, ErrUntrusted) {
		t.Fatalf("journal naming /etc: merges of %v finished, %v; want ErrUntrusted", done, err)
	}
	if err := os.WriteFile(journal, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("4", filepath.Join(root, "latest")); err != nil {
		t.Fatal(err) // the series' link to its newest: skipped, not a checkpoint
	}
	if done, err := FinishInterruptedMerges(root, uint32(os.Geteuid())); len(done) != 1 || done[0] != dirs[0] || err != nil {
		t.Fatalf("finish: merges of %v, %v; want %s", done, err, dirs[0])
	}
	want := map[string]string{dirs[1]: "aBCdEFGH", dirs[2]: "aBCdEfGH", dirs[3]: "abcdEfGH"}
	for d, w := range want {
		if got := string(resolveHeap(t, d)); got != w {
			t.Fatalf("after the finished merge %s reads %q, want %q", d, got, w)
		}
	}
	d, _ = ReadManifest(dirs[2])
	c, _ = ReadManifest(dirs[1])
	if err := CheckChainLink(d, c, dirs[1]); err != nil {
		t.Fatalf("link after the finished merge: %v", err)
	}
}
