package image

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Merging an old image into its child, so that the old one can be removed
// and the chain stays restorable (`rtcr run --keep`):
//
//   - the child C of the old image O becomes a full image (or, when O is
//     itself incremental, takes O's place in the chain): for each process,
//     a new page file holds C's page file unchanged followed by the pages
//     C took from O's page file of that process (runs of depth 1, its own
//     or, PageRun.Pid, those of processes sharing them copy-on-write),
//     each page of O once, which become runs of depth 0;
//     C's runs into O's ancestors move one image closer;
//   - every later image D that descends from C loses one image of its
//     chain: its runs into O now name C (at the offsets the pages got in
//     C's new page file; a run is split where C's runs split), runs into
//     O's ancestors move one image closer, and its parent link names its
//     rewritten parent's new manifest checksum;
//   - before anything is written every run of D into O is checked to be a
//     page C also took from the same page file of O at the same offset
//     (runs are flattened at
//     dump time, so it always is for images rtcr wrote); otherwise the
//     merge is refused and nothing changes.
//
// Write order and crash safety: C's new page files are written first
// (temp file, fsync, rename, new names: C's manifest still names the old
// ones); then every new manifest is computed in memory (each naming its
// rewritten parent's new checksum) and staged beside the manifest it
// replaces (".manifest.img.merged", written atomically); then a journal
// (MergeJournal) listing the staged images is written into O; only then
// are the staged manifests renamed into place, C first, newest last, and
// the directories synced; last, the journal and C's old page files are
// removed (O by the caller). So:
//
//   - a crash before the journal is complete leaves every image as it
//     was, the chain through O intact (stray staged manifests and page
//     files are ignored, and removed by ResumeMerge or with their image);
//   - a crash after it, during the renames (a few rename calls, no data
//     written), leaves C and the images already switched restorable and
//     the next one (and the ones after it) refused at restore, because
//     its parent's checksum no longer matches ("parent image … changed
//     since the child was written"): detectably broken, never silently
//     wrong, until ResumeMerge (run by the series when it opens and
//     before each removal) finishes the renames from the journal. O is
//     kept until then.

// MergeStats reports what Merge did.
type MergeStats struct {
	// Child is the image made independent of the old one ("" when no
	// image of the list was its child: nothing to merge).
	Child string
	// Pages is the number of pages copied from the old image into it.
	Pages uint64
	// Rewritten lists the later images whose manifests were rewritten.
	Rewritten []string
	// Base says the child's pages went into the old image's page files,
	// which became the child's (merge_base_linux.go); Pages then counts
	// the child's pages copied.
	Base bool
}

// chainImage is one image of a merge.
type chainImage struct {
	dir    string
	c      *Checkpoint
	parent int // index in the merge's list of its parent, -1 for the old image
	depth  int // depth of the old image seen from this one
}

// Merge merges the image in oldDir into its child among newer (image
// directories, oldest first; images that do not descend from the old one
// are left alone) and rewrites the child's descendants among newer, so
// that oldDir can then be removed: see the comment above. The old image
// may have at most one child among newer. oldDir itself is not changed.
func Merge(oldDir string, newer []string) (*MergeStats, error) {
	old, err := ReadManifest(oldDir)
	if err != nil {
		return nil, fmt.Errorf("merge %s: %w", oldDir, err)
	}
	imgs, err := descendants(oldDir, old, newer)
	if err != nil {
		return nil, err
	}
	st := &MergeStats{}
	if len(imgs) == 0 || old.ID == "" {
		return st, nil
	}
	for _, im := range imgs {
		l, err := lockDir(im.dir)
		if err != nil {
			return nil, fmt.Errorf("merge %s: %w", oldDir, err)
		}
		defer l.Close()
	}
	child := imgs[0]
	st.Child = child.dir
	// The cheap way when it fits: the child's pages into the base's page
	// files (merge_base_linux.go).
	if plan := planBaseMerge(old, imgs); plan != nil {
		if err := mergeIntoBase(oldDir, old, imgs, plan, st); err != nil {
			return nil, err
		}
		return st, nil
	}
	// The new runs of the child: the pages its depth-1 runs take from the
	// old image move into the page file of the process holding them (its
	// own, or that of the process it shares them with: PageRun.Pid),
	// after what that file holds (offsets of its other runs unchanged),
	// each page of the old image once.
	moved, err := movedPages(child.c)
	if err != nil {
		return nil, fmt.Errorf("merge %s into %s: %w", oldDir, child.dir, err)
	}
	// Check and rewrite the runs of the later images (in memory first).
	for _, d := range imgs[1:] {
		if err := rebaseRuns(d, moved); err != nil {
			return nil, fmt.Errorf("merge %s into %s: %s: %w", oldDir, child.dir, d.dir, err)
		}
	}
	oldPages, newPages, err := writeMergedPages(oldDir, old, child, moved, &st.Pages)
	if err != nil {
		_ = removeFiles(child.dir, newPages)
		return nil, fmt.Errorf("merge %s into %s: %w", oldDir, child.dir, err)
	}
	// The child's manifest: its depth-1 runs are its own now.
	c := child.c
	_ = c.runs(func(pid int, r *PageRun) error {
		switch {
		case r.Depth == 1:
			o := r.Owner(pid)
			r.Depth, r.FileOff, r.Pid = 0, newOffset(moved.moves[o], r.FileOff), moved.pid(o, pid)
		case r.Depth > 1:
			r.Depth--
		}
		return nil
	})
	if err := commitMerge(oldDir, old, imgs, nil, newPages, oldPages, st); err != nil {
		return st, err
	}
	return st, nil
}

// commitMerge links the child of a merge to the old image's parent and
// writes the manifests of imgs (computed in memory) and, for a merge into
// the base, moves the base's page files (see merge_base_linux.go), in the
// order the comment at the top of this file gives; newPages are the page
// files the merge wrote into the child (removed if it fails before its
// journal), oldPages the child's page files it replaced (removed at the
// end).
func commitMerge(oldDir string, old *Checkpoint, imgs []*chainImage, moves []baseMove, newPages, oldPages []string, st *MergeStats) error {
	child := imgs[0]
	c := child.c
	c.ChainLen = old.ChainLen
	c.Parent = nil
	if old.Parent != nil {
		l := *old.Parent
		if !filepath.IsAbs(l.Dir) {
			if rel, err := filepath.Rel(child.dir, ParentDir(oldDir, old.Parent)); err == nil {
				l.Dir = rel
			} else {
				l.Dir = ParentDir(oldDir, old.Parent)
			}
		}
		c.Parent = &l
	}
	// Every new manifest is computed (each names its parent's new
	// checksum) and staged beside the one it replaces; the journal in the
	// old image then lists them, and only then are they renamed into
	// place, newest last. See the comment at the top of this file.
	abort := func() {
		_ = removeFiles(child.dir, newPages)
		_ = removeFiles(oldDir, []string{mergeMoves})
		for _, im := range imgs {
			_ = removeFiles(im.dir, []string{stagedManifest})
		}
	}
	sums := make([][32]byte, len(imgs))
	for i, im := range imgs {
		if i > 0 {
			im.c.ChainLen--
			im.c.Parent.Sum = hex.EncodeToString(sums[im.parent][:])
		}
		write, sum, err := encodeManifest(im.dir, im.c)
		if err == nil {
			err = WriteFileAtomic(im.dir, stagedManifest, write)
		}
		if err != nil {
			abort()
			return fmt.Errorf("merge %s into %s: %w", oldDir, child.dir, err)
		}
		sums[i] = sum
	}
	var journal []string
	for _, im := range imgs {
		abs, err := filepath.Abs(im.dir)
		if err != nil {
			abort()
			return fmt.Errorf("merge %s: %w", oldDir, err)
		}
		journal = append(journal, abs)
	}
	if moves != nil {
		if err := writeMoves(oldDir, moves); err != nil {
			abort()
			return fmt.Errorf("merge %s into %s: %w", oldDir, child.dir, err)
		}
	}
	if err := WriteFileAtomic(oldDir, MergeJournal, func(w io.Writer) error {
		_, err := io.WriteString(w, strings.Join(journal, "\n")+"\n")
		return err
	}); err != nil {
		abort()
		return fmt.Errorf("merge %s into %s: %w", oldDir, child.dir, err)
	}
	if err := finishMerge(oldDir, journal, moves); err != nil {
		return fmt.Errorf("merge %s into %s (resumed by ResumeMerge): %w", oldDir, child.dir, err)
	}
	for _, im := range imgs[1:] {
		st.Rewritten = append(st.Rewritten, im.dir)
	}
	for _, m := range moves {
		if m.childName != "" {
			oldPages = append(oldPages, m.childName)
		}
	}
	if err := removeFiles(child.dir, oldPages); err != nil {
		return fmt.Errorf("merge %s into %s: removing the replaced page files: %w", oldDir, child.dir, err)
	}
	_ = removeFiles(oldDir, []string{mergeMoves, MergeJournal})
	return nil
}

// runMove is a range of the old image's page file of one process that the
// child takes pages from (FileOff, Count; Addr unused), and where those
// pages go in that process's new page file.
type runMove struct {
	PageRun
	newOff int64
}

// pageMoves are the pages a merge moves from the old image into the child:
// by the process whose page file in the old image holds them (owner), the
// ranges of that file, and which process of the child gets them in its new
// page file (holder: the owner itself, or, when the child has no live
// process with its pid, the first process of the child taking them).
type pageMoves struct {
	moves  map[int][]runMove // owner -> sorted, disjoint ranges and new offsets
	holder map[int]int       // owner -> holder
	order  map[int][]int     // holder -> the owners whose pages follow its page file, in order
}

// pid is what PageRun.Pid becomes for a run of process p whose pages
// owner's page file held in the old image: the holder, 0 if that is p.
func (m *pageMoves) pid(owner, p int) int {
	if h := m.holder[owner]; h != p {
		return h
	}
	return 0
}

// movedPages finds, for the child image c, the pages its runs of depth 1
// take from the old image (each page of the old image once) and where
// they go: after the page file of their holder in c, owner after owner.
func movedPages(c *Checkpoint) (*pageMoves, error) {
	spans := map[int][][2]int64{}
	firstRef := map[int]int{}
	var owners []int
	_ = c.runs(func(pid int, r *PageRun) error {
		if r.Depth == 1 {
			o := r.Owner(pid)
			if _, ok := spans[o]; !ok {
				firstRef[o] = pid
				owners = append(owners, o)
			}
			spans[o] = append(spans[o], [2]int64{r.FileOff, r.FileOff + int64(r.Count)*PageSize})
		}
		return nil
	})
	m := &pageMoves{moves: map[int][]runMove{}, holder: map[int]int{}, order: map[int][]int{}}
	next := map[int]int64{}
	// Owners that hold their own pages first, so that a holder's own
	// pages come right after its page file.
	sort.SliceStable(owners, func(i, j int) bool {
		oi, oj := c.ProcessByPid(owners[i]), c.ProcessByPid(owners[j])
		return oi != nil && !oi.Zombie && (oj == nil || oj.Zombie)
	})
	for _, pid := range owners {
		h := pid
		if op := c.ProcessByPid(pid); op == nil || op.Zombie {
			h = firstRef[pid]
		}
		hp := c.ProcessByPid(h)
		if hp == nil {
			return nil, fmt.Errorf("pid %d: internal error: no holder for its pages: %w", pid, ErrCorrupt)
		}
		off, ok := next[h]
		if !ok {
			off = hp.PageFileSize
		}
		ss := spans[pid]
		sort.Slice(ss, func(i, j int) bool { return ss[i][0] < ss[j][0] })
		var ms []runMove
		for _, sp := range ss {
			if k := len(ms) - 1; k >= 0 && sp[0] <= ms[k].FileOff+int64(ms[k].Count)*PageSize {
				if end := ms[k].FileOff + int64(ms[k].Count)*PageSize; sp[1] > end {
					ms[k].Count += uint64(sp[1]-end) / PageSize
					off += sp[1] - end
				}
				continue
			}
			n := uint64(sp[1]-sp[0]) / PageSize
			ms = append(ms, runMove{PageRun: PageRun{FileOff: sp[0], Count: n}, newOff: off})
			off += sp[1] - sp[0]
		}
		next[h] = off
		m.moves[pid], m.holder[pid] = ms, h
		m.order[h] = append(m.order[h], pid)
	}
	return m, nil
}

// newOffset returns the new page-file offset of the page at old offset off
// of moves (it lies in one of them: the caller took it from there).
func newOffset(moves []runMove, off int64) int64 {
	i := sort.Search(len(moves), func(i int) bool { return moves[i].FileOff+int64(moves[i].Count)*PageSize > off })
	if i < len(moves) && moves[i].FileOff <= off {
		return moves[i].newOff + (off - moves[i].FileOff)
	}
	return -1
}

// descendants reads the images of newer and returns those that descend
// from old (in dir): its child first, then the child's descendants, in the
// order of newer, each with the depth of old seen from it.
func descendants(dir string, old *Checkpoint, newer []string) ([]*chainImage, error) {
	var imgs []*chainImage
	ids := map[string]int{old.ID: -1} // id -> index in imgs (-1: old)
	dirs := map[string]int{}          // resolved dir -> index
	oldAbs, _ := filepath.Abs(dir)
	dirs[oldAbs] = -1
	depth := map[int]int{-1: 0}
	for _, nd := range newer {
		c, err := ReadManifest(nd)
		if err != nil {
			continue // not an image (any more): nothing of the chain
		}
		if c.Parent == nil || c.ID == "" {
			continue
		}
		pabs, _ := filepath.Abs(ParentDir(nd, c.Parent))
		pi, okDir := dirs[pabs]
		pj, okID := ids[c.Parent.ID]
		if !okDir || !okID || pi != pj {
			continue
		}
		if pi == -1 && len(imgs) > 0 {
			return nil, fmt.Errorf("merge %s: two images name it as their parent (%s, %s): not merged", dir, imgs[0].dir, nd)
		}
		if pi == -1 && c.Parent.Sum != old.SumHex() {
			return nil, fmt.Errorf("merge %s: its child %s names another manifest checksum: %w", dir, nd, ErrCorrupt)
		}
		if pi >= 0 && c.Parent.Sum != imgs[pi].c.SumHex() {
			return nil, fmt.Errorf("merge %s: %s names another manifest checksum of its parent %s: %w", dir, nd, imgs[pi].dir, ErrCorrupt)
		}
		plen := old.ChainLen
		if pi >= 0 {
			plen = imgs[pi].c.ChainLen
		}
		if c.ChainLen != plen+1 {
			return nil, fmt.Errorf("merge %s: %s has a chain of %d images, its parent %d: %w", dir, nd, c.ChainLen, plen, ErrCorrupt)
		}
		im := &chainImage{dir: nd, c: c, parent: pi, depth: depth[pi] + 1}
		if im.depth > c.ChainLen {
			return nil, fmt.Errorf("merge %s: %s has a chain of %d images, shorter than its distance %d to it: %w", dir, nd, c.ChainLen, im.depth, ErrCorrupt)
		}
		imgs = append(imgs, im)
		ids[c.ID] = len(imgs) - 1
		abs, _ := filepath.Abs(nd)
		dirs[abs] = len(imgs) - 1
		depth[len(imgs)-1] = im.depth
	}
	if len(imgs) > 0 && imgs[0].parent != -1 {
		return nil, fmt.Errorf("merge %s: internal error: first descendant is not its child", dir)
	}
	return imgs, nil
}

// rebaseRuns rewrites the runs of d (a descendant of the child) for the
// merge: its runs into the old image (depth d.depth) name the child
// (depth d.depth-1) at the pages' new offsets, split where the child's
// runs split; deeper runs move one image closer. Every page of a run into
// the old image must be one the child took from the old image at the same
// offset.
func rebaseRuns(d *chainImage, moved *pageMoves) error {
	for i := range d.c.Processes {
		p := &d.c.Processes[i]
		for j := range p.VMAs {
			v := &p.VMAs[j]
			var out []PageRun
			for _, r := range v.Pages {
				switch {
				case r.Depth < d.depth:
					out = append(out, r)
				case r.Depth > d.depth:
					r.Depth--
					out = append(out, r)
				default:
					o := r.Owner(p.Pid)
					parts, err := splitRun(r, moved.moves[o])
					if err != nil {
						return fmt.Errorf("pid %d: %w", p.Pid, err)
					}
					for _, q := range parts {
						q.Depth, q.Pid = d.depth-1, moved.pid(o, p.Pid)
						out = append(out, q)
					}
				}
			}
			v.Pages = out
		}
	}
	return nil
}

// splitRun maps the run r (pages of the old image) onto the ranges the
// child moved out of the same page file: one run per piece, at the new
// offsets.
func splitRun(r PageRun, moves []runMove) ([]PageRun, error) {
	var out []PageRun
	addr, off, left := r.Addr, r.FileOff, r.Count
	for left > 0 {
		i := sort.Search(len(moves), func(i int) bool { return moves[i].FileOff+int64(moves[i].Count)*PageSize > off })
		if i == len(moves) || moves[i].FileOff > off {
			return nil, fmt.Errorf("page at %#x comes from offset %d of the old image, which its child does not take it from: not merged", addr, off)
		}
		m := moves[i]
		in := uint64(off-m.FileOff) / PageSize
		n := min(left, m.Count-in)
		out = append(out, PageRun{Addr: addr, Count: n, FileOff: m.newOff + int64(in)*PageSize, Pid: r.Pid})
		addr += n * PageSize
		off += int64(n) * PageSize
		left -= n
	}
	return out, nil
}

// writeMergedPages writes, for every process of the child whose page file
// in the old image holds pages the child took, a new page file: its own
// page file followed by those pages (moved, in order of their old
// offsets). It sets the processes' page file fields and
// returns the names of the replaced page files and of those written (also
// on error); pages counts the pages
// copied. The files are written atomically under names of a new
// generation; the child's manifest still names the old ones.
func writeMergedPages(oldDir string, old *Checkpoint, child *chainImage, moved *pageMoves, pages *uint64) (replaced, written []string, err error) {
	gen := NewID()[:16]
	for i := range child.c.Processes {
		p := &child.c.Processes[i]
		owners := moved.order[p.Pid]
		if len(owners) == 0 {
			continue
		}
		own, closeOwn, err := OpenPages(child.dir, p)
		if err != nil {
			return replaced, written, err
		}
		name := PageFileName(gen, p.Pid)
		var pw *PageWriter
		err = WriteFileAtomic(child.dir, name, func(w io.Writer) error {
			pw = NewPageWriter(w)
			if _, err := pw.Write(own); err != nil {
				return err
			}
			for _, o := range owners {
				if err := copyMoved(pw, oldDir, old, o, moved.moves[o], pages); err != nil {
					return err
				}
			}
			return nil
		})
		closeOwn()
		if err != nil {
			return replaced, written, fmt.Errorf("pid %d: %w", p.Pid, err)
		}
		written = append(written, name)
		if p.PageFile != "" {
			replaced = append(replaced, p.PageFile)
		}
		p.PageFile, p.PageFileSize, p.PageChecksums = name, pw.Offset(), pw.Checksums()
	}
	return replaced, written, nil
}

// copyMoved writes the ranges moves of the page file of process owner in
// the old image to pw; pages counts the pages copied.
func copyMoved(pw *PageWriter, oldDir string, old *Checkpoint, owner int, moves []runMove, pages *uint64) error {
	op := old.ProcessByPid(owner)
	if op == nil || op.Zombie {
		return fmt.Errorf("pages are taken from the page file of pid %d in %s, which has no such process: %w", owner, oldDir, ErrCorrupt)
	}
	theirs, closeTheirs, err := OpenPages(oldDir, op)
	if err != nil {
		return err
	}
	defer closeTheirs()
	for _, m := range moves {
		end := m.FileOff + int64(m.Count)*PageSize
		if m.FileOff < 0 || end > int64(len(theirs)) {
			return fmt.Errorf("pid %d: %d pages at offset %d beyond the page file of %s (%d bytes): %w", owner, m.Count, m.FileOff, oldDir, len(theirs), ErrCorrupt)
		}
		if _, err := pw.Write(theirs[m.FileOff:end]); err != nil {
			return err
		}
		*pages += m.Count
	}
	return nil
}

// lockDir takes flock(LOCK_EX) on dir, as a dump does (one writer at a
// time); close the file to release it.
func lockDir(dir string) (*os.File, error) {
	d, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		return nil, fmt.Errorf("image directory %s: locked by a dump: %w", dir, err)
	}
	return d, nil
}
