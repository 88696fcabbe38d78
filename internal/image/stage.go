package image

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// A dump writes into the image directory in place, in every layout (a new
// directory, one that holds other files, a mount point, the working
// directory), and the previous image stays restorable until the new one is
// complete:
//
//   - each dump is a generation with a random id; its page files are
//     "pages-<gen>-<pid>.img", so they never overwrite the old image's;
//   - manifest.img, written last and atomically (temp file, fsync, rename,
//     fsync of the directory), is the single commit point: before its
//     rename the old manifest and the old page files are untouched;
//   - after the commit the page files of other generations are removed:
//     those the replaced manifest named, and "pages-<gen>-<pid>.img" files
//     left by dumps that were killed;
//   - temporary files of killed dumps (".manifest.img.tmp-N",
//     ".pages-….img.tmp-N", ".rtcr-probe-N") are removed when the next
//     dump starts. No other file is ever touched;
//   - a failed dump removes the files of its generation and the
//     directories it created;
//   - one dump at a time: a dump holds flock(LOCK_EX) on the directory.
//
// Images of earlier rtcr versions ("pages-<pid>.img") stay readable: the
// manifest names every page file, so readers never derive a name.

var (
	// genPageRe matches the page files of a generation; group 1 is the
	// generation.
	genPageRe = regexp.MustCompile(`^pages-([0-9a-f]{16})-[0-9]+\.img$`)
	// oldPageRe matches the page files of images of earlier versions.
	oldPageRe = regexp.MustCompile(`^pages-[0-9]+\.img$`)
	// tempRe matches rtcr's temporary files (WriteFileAtomic's
	// ".NAME.tmp-N" for the names it writes, and the writability probe).
	tempRe = regexp.MustCompile(`^(\.(manifest\.img|pages-([0-9a-f]{16}-)?[0-9]+\.img)\.tmp-[0-9]+|\.rtcr-probe-[0-9]+)$`)
)

// PageFileName returns the name of the page file of process pid in
// generation gen, "pages-<gen>-<pid>.img".
func PageFileName(gen string, pid int) string {
	return fmt.Sprintf("pages-%s-%d.img", gen, pid)
}

// Stage is one dump's hold on an image directory: where it writes, under
// which generation, and how the result becomes the image (Commit) or
// vanishes (Abort). See the comment at the top of this file.
//
// The directory is opened once, when it has been checked; every later
// file operation (WriteFile, WriteManifest, the sweeps) is relative to that
// descriptor, so a directory renamed away or replaced by a symbolic link
// meanwhile does not redirect the dump: it keeps writing into the
// directory it checked.
type Stage struct {
	// Dir is the image directory, absolute, with symbolic links resolved
	// once when the stage was made. It names the directory in messages;
	// files are written through the directory opened then, not by path.
	Dir string
	// Gen is this dump's generation: 16 hex digits, part of the name of
	// every page file it writes (PageFileName).
	Gen string
	// NoSync leaves out every fsync (page files, manifest, directory):
	// for an image that lives only until it was sent, a migration's
	// temporary one, removed afterwards, whose fsyncs were a disk's
	// latency in the freeze. A crash loses it, and nothing else.
	NoSync bool

	dir      *os.File        // Dir opened, flock(LOCK_EX) held until Commit or Abort
	created  []createdDir    // directories this dump created, deepest first
	oldPages map[string]bool // page files named by the manifest being replaced
}

// NewStage prepares a dump into dir: it creates dir (and missing parents)
// with mode 0700, resolves symbolic links, opens the directory (no
// symbolic link followed after that resolution), refuses a directory that
// is group- or world-writable or not writable, locks it against other
// dumps, removes temporary files of killed dumps and picks a new
// generation.
func NewStage(dir string) (_ *Stage, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image directory %s: %w", dir, err)
	}
	d, resolved, created, err := openImageDir(abs)
	if err != nil {
		return nil, err
	}
	// s.dir is set once the lock is held: Abort sweeps only then.
	s := &Stage{Dir: resolved, created: created}
	defer func() {
		if err != nil {
			if s.dir == nil {
				d.Close()
			}
			s.Abort()
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return nil, fmt.Errorf("image directory %s: %w", s.Dir, err)
	}
	if st.Mode&0o022 != 0 {
		// Anyone in the group (or anyone at all) could replace the image
		// or plant files in it.
		return nil, fmt.Errorf("image directory %s has mode %04o: it is group- or world-writable, refusing to write an image into it (chmod go-w %s)",
			s.Dir, st.Mode&0o7777, s.Dir)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("image directory %s: another dump is writing into it", s.Dir)
		}
		return nil, fmt.Errorf("image directory %s: flock: %w", s.Dir, err)
	}
	s.dir = d
	if err := probeWritable(d, s.Dir); err != nil {
		return nil, err
	}
	if err := s.sweep(func(name string) bool { return tempRe.MatchString(name) }); err != nil {
		return nil, fmt.Errorf("image directory %s: removing temporary files of an earlier dump: %w", s.Dir, err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("image directory %s: generation id: %w", s.Dir, err)
	}
	s.Gen = hex.EncodeToString(b[:])
	s.oldPages = map[string]bool{}
	if c, err := readManifestAt(d, s.Dir); err == nil {
		for _, p := range c.Processes {
			s.oldPages[p.PageFile] = true
		}
	}
	return s, nil
}

// WriteFile writes the file name (a plain name, such as PageFileName's)
// atomically into the stage's directory, as WriteFileAtomic does, through
// the directory opened by NewStage.
func (s *Stage) WriteFile(name string, write func(w io.Writer) error) error {
	if s.dir == nil {
		return fmt.Errorf("writing %s: the dump into %s is over", name, s.Dir)
	}
	return writeFileAt(s.dir, s.Dir, name, write, !s.NoSync)
}

// WriteManifest validates c and writes it as the stage directory's
// manifest, as WriteManifest does, through the directory opened by
// NewStage. This is the dump's commit point.
func (s *Stage) WriteManifest(c *Checkpoint) error {
	write, err := manifestWriter(s.Dir, c)
	if err != nil {
		return err
	}
	return s.WriteFile(ManifestName, write)
}

// Commit is called once the manifest of this generation is in place: it
// removes the page files of other generations and releases the directory.
func (s *Stage) Commit() error {
	defer s.unlock()
	if err := s.sweep(s.stale); err != nil {
		return fmt.Errorf("image directory %s: removing the previous image's page files: %w", s.Dir, err)
	}
	return nil
}

// Abort is called when the dump failed. Normally the failure came before
// the commit point: Abort removes every file of this generation (and
// temporary files) and the directories the dump created, leaving the
// directory as it was, previous image included. If the manifest in place
// is already this generation's (the failure came after the commit), Abort
// does what Commit does instead and reports committed.
func (s *Stage) Abort() (committed bool) {
	if s.dir == nil {
		s.removeCreated()
		return false
	}
	if s.Gen != "" && s.committed() {
		_ = s.Commit()
		return true
	}
	defer s.unlock()
	_ = s.sweep(func(name string) bool {
		return tempRe.MatchString(name) || (s.Gen != "" && strings.HasPrefix(name, "pages-"+s.Gen+"-"))
	})
	s.removeCreated()
	return false
}

// committed reports whether the manifest in Dir is this generation's.
func (s *Stage) committed() bool {
	c, err := readManifestAt(s.dir, s.Dir)
	if err != nil {
		// A manifest that exists but cannot be read may still be ours:
		// keep our page files then (the next dump removes them).
		var st unix.Stat_t
		serr := unix.Fstatat(int(s.dir.Fd()), ManifestName, &st, unix.AT_SYMLINK_NOFOLLOW)
		return !errors.Is(serr, unix.ENOENT)
	}
	for _, p := range c.Processes {
		if m := genPageRe.FindStringSubmatch(p.PageFile); m != nil && m[1] == s.Gen {
			return true
		}
	}
	return false
}

// stale reports whether name is a page file of an earlier image once this
// generation's manifest is in place.
func (s *Stage) stale(name string) bool {
	if m := genPageRe.FindStringSubmatch(name); m != nil {
		return m[1] != s.Gen
	}
	return s.oldPages[name] && oldPageRe.MatchString(name)
}

// sweep removes the regular files of the directory whose names match.
func (s *Stage) sweep(match func(name string) bool) error {
	ents, err := readDirAt(s.dir, s.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() || !match(e.Name()) {
			continue
		}
		err := unix.Unlinkat(int(s.dir.Fd()), e.Name(), 0)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, &fs.PathError{Op: "remove", Path: filepath.Join(s.Dir, e.Name()), Err: err})
		}
	}
	return errors.Join(errs...)
}

// unlock releases the directory lock and closes the directories held
// open.
func (s *Stage) unlock() {
	if s.dir != nil {
		s.dir.Close()
		s.dir = nil
	}
	closeCreated(s.created)
	s.created = nil
}

// removeCreated removes the directories this dump created, deepest first,
// as far as they are empty (each by name in its parent, opened when it was
// created).
func (s *Stage) removeCreated() {
	removeCreated(s.created)
	s.created = nil
}

// probeWritable checks that the directory d (path dir) is writable by
// creating and removing a temporary file in it (permission bits alone say
// nothing for root).
func probeWritable(d *os.File, dir string) error {
	f, name, err := createTempAt(d, dir, ".rtcr-probe-")
	if err != nil {
		return fmt.Errorf("image directory %s is not writable: %w", dir, err)
	}
	cerr := f.Close()
	rerr := unix.Unlinkat(int(d.Fd()), name, 0)
	if err := errors.Join(cerr, rerr); err != nil {
		return fmt.Errorf("image directory %s is not writable: %w", dir, err)
	}
	return nil
}

// RetryDuringCommit runs load, which reads the image in dir, and runs it
// again (three times at most) when it failed because a file was missing
// and manifest.img is no longer the file it was before: a dump committed a
// new image meanwhile and removed the old one's page files.
func RetryDuringCommit(dir string, load func() error) error {
	for attempt := 1; ; attempt++ {
		before, serr := os.Stat(filepath.Join(dir, ManifestName))
		err := load()
		if err == nil || !errors.Is(err, fs.ErrNotExist) || serr != nil || attempt == 3 {
			return err
		}
		now, serr := os.Stat(filepath.Join(dir, ManifestName))
		if serr != nil || os.SameFile(before, now) {
			return err
		}
	}
}
