// Package series keeps the numbered checkpoints of `rtcr run --every`:
// DIR/1, DIR/2, … (one image directory each, numbered on from the highest
// already there) and DIR/latest, a symbolic link to the newest complete
// one. The link is replaced atomically (a new link renamed over it) only
// after a checkpoint's image is complete, so it names a restorable image
// whenever rtcr stops, SIGKILL included. Older checkpoints beyond the
// number kept are removed after each new one.
//
// The package only names, links and removes directories; the images are
// written by the dump, which removes what it wrote when it fails.
package series

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// Latest is the name of the link to the newest complete checkpoint.
const Latest = "latest"

// Series is a directory of numbered checkpoints.
type Series struct {
	dir   string
	keep  int
	next  int
	merge bool
	note  func(string)
}

// Merge makes the removal of an old checkpoint merge it into its child
// first (image.Merge); a checkpoint whose merge fails is kept (and so are
// the ones after it), and the failure is reported by Done. note, if not
// nil, receives one line per merge.
func (s *Series) Merge(note func(string)) {
	s.merge, s.note = true, note
}

// Open opens (creating it, mode 0700) the series directory dir, keeping
// the newest keep checkpoints (0: all). A dir that is not a directory,
// or that others may write to, is refused.
func Open(dir string, keep int) (*Series, error) {
	if keep < 0 {
		return nil, fmt.Errorf("checkpoint series %s: keep %d < 0", dir, keep)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint series %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, fmt.Errorf("checkpoint series %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("checkpoint series %s: not a directory", dir)
	}
	if st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("checkpoint series %s has mode %#o: it is group- or world-writable", dir, st.Mode&0o7777)
	}
	s := &Series{dir: dir, keep: keep, next: 1}
	nums, err := s.Numbers()
	if err != nil {
		return nil, err
	}
	if err := s.resume(); err != nil {
		return nil, err
	}
	if len(nums) > 0 {
		s.next = nums[len(nums)-1] + 1
	}
	return s, nil
}

// Next returns the number and directory of the next checkpoint. The
// directory does not exist yet; the dump creates it.
func (s *Series) Next() (int, string) {
	return s.next, filepath.Join(s.dir, strconv.Itoa(s.next))
}

// Numbers returns the numbers of the checkpoint directories in the
// series, in increasing order. Other names are ignored.
func (s *Series) Numbers() ([]int, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint series %s: %w", s.dir, err)
	}
	var nums []int
	for _, e := range ents {
		n, ok := number(e.Name())
		if ok && e.IsDir() {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	return nums, nil
}

// number parses a checkpoint's name: a decimal number without sign or
// leading zero.
func number(name string) (int, bool) {
	if name == "" || name[0] < '1' || name[0] > '9' || len(name) > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(name)
	return n, err == nil
}

// Done records checkpoint n (the one Next gave) as complete: DIR/latest
// now names it, and checkpoints older than the newest Keep are removed.
// A checkpoint that failed is skipped with Skip instead.
func (s *Series) Done(n int) error {
	if n != s.next {
		return fmt.Errorf("checkpoint series %s: checkpoint %d done, %d expected", s.dir, n, s.next)
	}
	s.next++
	if err := s.link(n); err != nil {
		return err
	}
	return s.prune(n)
}

// Skip moves past checkpoint n, which failed (the dump removed what it
// wrote); DIR/latest keeps naming the previous one.
func (s *Series) Skip(n int) {
	if n == s.next {
		s.next++
	}
}

// link points DIR/latest at checkpoint n: a new link made beside it and
// renamed over it, then the directory synced.
func (s *Series) link(n int) error {
	tmp := filepath.Join(s.dir, fmt.Sprintf(".%s.tmp-%d", Latest, os.Getpid()))
	_ = os.Remove(tmp)
	if err := os.Symlink(strconv.Itoa(n), tmp); err != nil {
		return fmt.Errorf("checkpoint series %s: link to checkpoint %d: %w", s.dir, n, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, Latest)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("checkpoint series %s: link to checkpoint %d: %w", s.dir, n, err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("checkpoint series %s: %w", s.dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("checkpoint series %s: fsync: %w", s.dir, err)
	}
	return nil
}

// prune removes the checkpoints older than the newest keep, never the
// one latest names (newest).
func (s *Series) prune(newest int) error {
	if s.keep == 0 {
		return nil
	}
	nums, err := s.Numbers()
	if err != nil {
		return err
	}
	var errs []error
	for len(nums) > s.keep {
		n := nums[0]
		nums = nums[1:]
		if n == newest {
			continue
		}
		if s.merge {
			if err := s.mergeOld(n, nums); err != nil {
				errs = append(errs, fmt.Errorf("checkpoint %d kept: %w", n, err))
				break
			}
		}
		if err := os.RemoveAll(filepath.Join(s.dir, strconv.Itoa(n))); err != nil {
			errs = append(errs, fmt.Errorf("remove checkpoint %d: %w", n, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checkpoint series %s: %w", s.dir, err)
	}
	return nil
}

// mergeOld merges checkpoint n into its child among newer (the numbers
// after it).
func (s *Series) mergeOld(n int, newer []int) error {
	dirs := make([]string, len(newer))
	for i, m := range newer {
		dirs[i] = filepath.Join(s.dir, strconv.Itoa(m))
	}
	old := filepath.Join(s.dir, strconv.Itoa(n))
	resumed, err := image.ResumeMerge(old, dirs)
	if err != nil || resumed {
		return err // resumed: merged already, by an rtcr killed before it removed n
	}
	if _, err := os.Lstat(filepath.Join(old, image.ManifestName)); errors.Is(err, fs.ErrNotExist) {
		return nil // no image (a dump killed before its commit): nothing names it
	}
	st, err := image.Merge(old, dirs)
	if err != nil {
		return err
	}
	if st.Child != "" && s.note != nil && st.Base {
		s.note(fmt.Sprintf("checkpoint %d merged into %s (its %d pages appended to the page files of %d, which %s took, %d later manifests rewritten) and removed",
			n, filepath.Base(st.Child), st.Pages, n, filepath.Base(st.Child), len(st.Rewritten)))
	} else if st.Child != "" && s.note != nil {
		s.note(fmt.Sprintf("checkpoint %d merged into %s (%d pages copied, %d later manifests rewritten) and removed",
			n, filepath.Base(st.Child), st.Pages, len(st.Rewritten)))
	}
	return nil
}

// resume finishes the merges an rtcr killed meanwhile left half done (a
// checkpoint holding image.MergeJournal: some later manifests switched,
// others not) and removes the checkpoints so merged.
func (s *Series) resume() error {
	done, err := image.FinishInterruptedMerges(s.dir, uint32(os.Geteuid()))
	for _, old := range done {
		if rerr := os.RemoveAll(old); rerr != nil && err == nil {
			err = fmt.Errorf("remove merged checkpoint %s: %w", filepath.Base(old), rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("checkpoint series %s: %w", s.dir, err)
	}
	return nil
}
