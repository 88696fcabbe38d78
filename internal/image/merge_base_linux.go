package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Merging into the base: the cheap way to merge an old image O into its
// child C when O holds most of the pages (the full base of a periodic
// series, C an increment of a few pages). Instead of copying the pages C
// takes from O into C's page files (what Merge otherwise does: the whole
// base, every time the oldest checkpoint goes), each page file of O that
// C takes pages from is extended with C's own page file of that process
// and becomes C's page file: C's runs into O keep their offsets, its own
// runs move by the size of O's file. The copy is what C holds.
//
// The price is the pages of O that C wrote again: they stay in the page
// file, unnamed. The merge is made this way only while such dead pages
// are at most as many as the live ones (the page file at most twice what
// the image names; otherwise the copying merge compacts it) and when it
// copies less than the copying merge would; only when every process
// whose pages C takes from O is a live process of C (its page file there
// takes O's), and every later image's runs into O name pages of those
// files.
//
// Crash safety: O's page files are not touched before the merge's journal
// is written (the new manifests are computed and staged first, with the
// checksums of the page files to be; the space the moves append is
// reserved in O's files without changing their size, so that a full file
// system refuses the merge here; the list of moves, mergeMoves, is
// written into O just before the journal). After the journal, each move
// (truncate O's page file to its size, append C's page file, fsync,
// rename into C under a new name) can be done again from the start, so a
// merge interrupted there is finished by ResumeMerge like any other. O's
// manifest is removed before the first move (O is no longer an image
// then: unlike a copying merge, which leaves O whole until it is
// removed, O cannot be restored once its merge is past the journal); in
// the meantime O's page file has extra bytes or is gone, and the images
// through it are refused until the merge is finished (restore finishes it
// first, as it does for a merge interrupted in its renames).

// baseMove is one page file of the old image that becomes the child's
// page file of process pid: truncated to oldSize, the child's page file
// childName ("" if none) appended, renamed to newName in the child.
type baseMove struct {
	pid       int
	oldName   string
	oldSize   int64
	childName string
	newName   string
}

// basePlan is a merge into the base: the moves, and by process of the
// child the size of the old image's page file its own runs move by.
type basePlan struct {
	moves []baseMove
	shift map[int]int64
}

// mergeMoves is the file in the old image listing the moves of a merge
// into the base (one a line: oldSize, oldName, childName, newName,
// tab-separated).
const mergeMoves = "merge-moves"

// planBaseMerge returns the plan of a merge of old into imgs[0] the cheap
// way, or nil when it should be merged by copying (see the comment
// above).
func planBaseMerge(old *Checkpoint, imgs []*chainImage) *basePlan {
	if mergeBaseOff {
		return nil
	}
	c := imgs[0].c
	plan := &basePlan{shift: map[int]int64{}}
	// The owners of the pages the child takes from the old image.
	taken := map[int][][2]int64{} // owner -> spans of the old page file
	own := map[int][][2]int64{}   // owner -> spans of the child's page file
	_ = c.runs(func(pid int, r *PageRun) error {
		sp := [2]int64{r.FileOff, r.FileOff + int64(r.Count)*PageSize}
		switch r.Depth {
		case 0:
			own[r.Owner(pid)] = append(own[r.Owner(pid)], sp)
		case 1:
			taken[r.Owner(pid)] = append(taken[r.Owner(pid)], sp)
		}
		return nil
	})
	if len(taken) == 0 {
		return nil
	}
	var dead, live, copyBytes, takenBytes int64
	for o, spans := range taken {
		cp, op := c.ProcessByPid(o), old.ProcessByPid(o)
		if cp == nil || cp.Zombie || op == nil || op.Zombie || op.PageFile == "" {
			return nil
		}
		n, end := spanBytes(spans)
		m, ownEnd := spanBytes(own[o])
		if n < 0 || m < 0 || end > op.PageFileSize || ownEnd > cp.PageFileSize {
			return nil // a run beyond its file: let the copying merge refuse
		}
		live += n + m
		dead += op.PageFileSize - n + cp.PageFileSize - m
		copyBytes += cp.PageFileSize
		takenBytes += n
		plan.shift[o] = op.PageFileSize
	}
	if dead > live || copyBytes > takenBytes {
		return nil
	}
	// Every later image's runs into the old image name pages of the
	// moved files.
	for _, d := range imgs[1:] {
		for i := range d.c.Processes {
			p := &d.c.Processes[i]
			for j := range p.VMAs {
				for _, r := range p.VMAs[j].Pages {
					if r.Depth != d.depth {
						continue
					}
					size, ok := plan.shift[r.Owner(p.Pid)]
					if !ok || r.FileOff < 0 || r.FileOff+int64(r.Count)*PageSize > size {
						return nil
					}
				}
			}
		}
	}
	gen := NewID()[:16]
	for i := range c.Processes {
		p := &c.Processes[i]
		if size, ok := plan.shift[p.Pid]; ok {
			op := old.ProcessByPid(p.Pid)
			plan.moves = append(plan.moves, baseMove{pid: p.Pid, oldName: op.PageFile, oldSize: size, childName: p.PageFile, newName: PageFileName(gen, p.Pid)})
		}
	}
	return plan
}

// spanBytes sorts spans and returns the bytes they cover (pages several
// processes share are counted once) and where the last one ends; -1 for
// a span that is not one.
func spanBytes(spans [][2]int64) (n, end int64) {
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	for _, sp := range spans {
		if sp[0] < 0 || sp[1] < sp[0] {
			return -1, 0
		}
		lo := max(sp[0], end)
		if sp[1] > lo {
			n += sp[1] - lo
			end = sp[1]
		}
	}
	return n, end
}

// mergeIntoBase merges old into imgs[0] by plan: the checksums of the
// page files to be, the runs of the child and of the later images, then
// commitMerge (which moves the files after the journal).
func mergeIntoBase(oldDir string, old *Checkpoint, imgs []*chainImage, plan *basePlan, st *MergeStats) error {
	child := imgs[0]
	c := child.c
	for _, m := range plan.moves {
		cp := c.ProcessByPid(m.pid)
		op := old.ProcessByPid(m.pid)
		// The checksums of O's file, its last chunk continued with the
		// child's bytes.
		pw := resumePageWriter(op.PageChecksums, m.oldSize)
		if cp.PageFile != "" || cp.PageFileSize > 0 {
			data, closeData, err := OpenPages(child.dir, cp)
			if err != nil {
				return fmt.Errorf("merge %s into %s: %w", oldDir, child.dir, err)
			}
			_, err = pw.Write(data)
			closeData()
			if err != nil {
				return err
			}
			st.Pages += uint64(len(data)) / PageSize
		}
		cp.PageFile, cp.PageFileSize, cp.PageChecksums = m.newName, pw.Offset(), pw.Checksums()
	}
	// The child: its own runs move by the size of O's file before them,
	// its runs into O are its own at the same offsets.
	// The later images: runs into O name the child at the same offsets,
	// runs into the child move as the child's own did. (imgs[0] is the
	// child, at depth 1 from O.)
	for _, d := range imgs {
		_ = d.c.runs(func(pid int, r *PageRun) error {
			switch {
			case r.Depth == d.depth-1:
				r.FileOff += plan.shift[r.Owner(pid)]
			case r.Depth >= d.depth:
				r.Depth--
			}
			return nil
		})
	}
	if err := reserveMoves(oldDir, c, plan.moves); err != nil {
		return fmt.Errorf("merge %s into %s: %w", oldDir, child.dir, err)
	}
	st.Base = true
	return commitMerge(oldDir, old, imgs, plan.moves, nil, nil, st)
}

// reserveMoves reserves, before the journal, the space each move will
// append to the old image's page file (fallocate with KEEP_SIZE: the file
// and the old image stay as they are), so that a full file system refuses
// the merge while nothing is changed yet, not in the middle of the moves.
// A file system without fallocate leaves it to the moves.
func reserveMoves(oldDir string, c *Checkpoint, moves []baseMove) error {
	for _, m := range moves {
		n := c.ProcessByPid(m.pid).PageFileSize - m.oldSize
		if n <= 0 {
			continue
		}
		path := filepath.Join(oldDir, m.oldName)
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, m.oldSize, n)
		f.Close()
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reserve %d bytes after %s: %w", n, path, err)
		}
	}
	return nil
}

// resumePageWriter returns a PageWriter that continues a page file of
// size bytes whose chunk checksums are sums (written to io.Discard: it
// only checksums what is appended).
func resumePageWriter(sums []uint32, size int64) *PageWriter {
	full := int(size / PageChunkSize)
	pw := &PageWriter{w: io.Discard, off: size, sums: append([]uint32(nil), sums[:full]...)}
	if size%PageChunkSize != 0 {
		pw.crc = sums[full]
	}
	return pw
}

// writeMoves writes the moves into the old image (mergeMoves).
func writeMoves(oldDir string, moves []baseMove) error {
	return WriteFileAtomic(oldDir, mergeMoves, func(w io.Writer) error {
		for _, m := range moves {
			if _, err := fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", m.oldSize, m.oldName, m.childName, m.newName); err != nil {
				return err
			}
		}
		return nil
	})
}

// readMoves reads the moves of a merge into the base from the old image
// (nil, nil when it has none: a copying merge). Each name must be a plain
// file name (no directory): the moves stay within the old image and its
// child.
func readMoves(oldDir string) ([]baseMove, error) {
	path := filepath.Join(oldDir, mergeMoves)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	var moves []baseMove
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 4 {
			return nil, fmt.Errorf("%s: line %q: %w", path, sc.Text(), ErrCorrupt)
		}
		size, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil || size < 0 || !plainName(fs[1]) || !plainName(fs[3]) || (fs[2] != "" && !plainName(fs[2])) {
			return nil, fmt.Errorf("%s: line %q: %w", path, sc.Text(), ErrCorrupt)
		}
		moves = append(moves, baseMove{oldSize: size, oldName: fs[1], childName: fs[2], newName: fs[3]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return moves, nil
}

// plainName reports whether name is a file name without a directory.
func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// mergeBaseOff (set by tests) makes every merge a copying one.
var mergeBaseOff bool

// mergeMoveHook, when set (by tests), runs before the i-th move of
// applyMoves (step 0) and after its page file was extended, before its
// rename (step 1); an error stops the merge there, as a crash would.
var mergeMoveHook func(i, step int) error

// applyMoves does the moves of a merge into the base, each from the
// start unless done already (its page file is in the child, not in the
// old image), then syncs both directories.
func applyMoves(oldDir, childDir string, moves []baseMove) error {
	for i, m := range moves {
		if mergeMoveHook != nil {
			if err := mergeMoveHook(i, 0); err != nil {
				return err
			}
		}
		if err := applyMove(oldDir, childDir, m); err != nil {
			return err
		}
	}
	return syncDirs(childDir, oldDir)
}

// applyMove does one move (see baseMove).
func applyMove(oldDir, childDir string, m baseMove) error {
	src := filepath.Join(oldDir, m.oldName)
	dst := filepath.Join(childDir, m.newName)
	f, err := os.OpenFile(src, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Lstat(dst); serr == nil {
			return nil // done already
		}
	}
	if err != nil {
		return fmt.Errorf("merge into the base: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(m.oldSize); err != nil {
		return fmt.Errorf("merge into the base: truncate %s: %w", src, err)
	}
	if m.childName != "" {
		in, err := os.OpenFile(filepath.Join(childDir, m.childName), os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("merge into the base: %w", err)
		}
		if _, err := f.Seek(m.oldSize, io.SeekStart); err == nil {
			_, err = io.Copy(f, in)
		}
		in.Close()
		if err != nil {
			return fmt.Errorf("merge into the base: append %s to %s: %w", in.Name(), src, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("merge into the base: fsync %s: %w", src, err)
	}
	if mergeMoveHook != nil {
		if err := mergeMoveHook(0, 1); err != nil {
			return err
		}
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("merge into the base: %w", err)
	}
	return nil
}
