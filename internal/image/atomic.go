package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// writeBufferSize is the size of the buffer WriteFileAtomic puts in front
// of the temporary file.
const writeBufferSize = 1 << 20

// WriteFileAtomic creates dir/name with mode 0600 holding the bytes that
// write produces, so that dir/name either keeps its old state or holds the
// complete new content, even across a crash.
//
// It creates a temporary file ".NAME.tmp-*" in dir, calls write with a
// buffered writer around it, flushes, fsyncs and closes the file, renames it
// to name and fsyncs dir. On any error (or a panic in write) the temporary
// file is removed. name must be a plain file name (no '/').
func WriteFileAtomic(dir, name string, write func(w io.Writer) error) (err error) {
	path := filepath.Join(dir, name)
	if !isPlainName(name) {
		return fmt.Errorf("writing %s: %q is not a plain file name", path, name)
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: creating temporary file: %w", path, err)
	}
	tmp := f.Name()
	closed, renamed := false, false
	defer func() {
		if renamed {
			return
		}
		// Also reached when write panics: never leave a temp file behind.
		if !closed {
			f.Close()
		}
		os.Remove(tmp)
	}()

	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("writing %s: chmod %s: %w", path, tmp, err)
	}
	bw := bufio.NewWriterSize(f, writeBufferSize)
	if err := write(bw); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: fsync: %w", path, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory so that renames inside it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return d.Close()
}

// PrepareDir makes dir ready to receive an image: it creates it (and its
// parents) with mode 0700 if it does not exist, requires an existing dir to
// be a directory, and checks that it is writable by creating and removing a
// temporary file in it (permission bits alone say nothing for root).
func PrepareDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating image directory %s: %w", dir, err)
		}
		// MkdirAll's mode is filtered by the umask; make it exact.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("creating image directory %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("image directory %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("image directory %s exists and is not a directory", dir)
	}

	f, err := os.CreateTemp(dir, ".rtcr-probe-*")
	if err != nil {
		return fmt.Errorf("image directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(cerr, rerr); err != nil {
		return fmt.Errorf("image directory %s is not writable: %w", dir, err)
	}
	return nil
}

// isPlainName reports whether name is a usable file name inside the image
// directory: not empty, not "." or "..", no '/' and no NUL.
func isPlainName(name string) bool {
	if name == "" || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return false
		}
	}
	return true
}

// Stage is where one dump writes its image and how the result becomes the
// image in the directory the user named.
//
// Over an existing image in a directory that holds nothing else, the new
// image is written to a directory beside it and Commit swaps the two, so a
// failed dump leaves the old image. Otherwise (a new directory, a mount
// point, a directory with other files) the image is written in place:
// the old manifest goes first, so the directory never shows the old
// manifest with new pages, and Commit removes page files the new image
// does not use. Other files are never touched.
type Stage struct {
	// Final is the image directory, Dir where the dump writes.
	Final, Dir string
	swap       bool
}

// NewStage prepares a dump into dir.
func NewStage(dir string) (*Stage, error) {
	final, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image directory %s: %w", dir, err)
	}
	s := &Stage{Final: final, Dir: final}
	if _, err := os.Stat(filepath.Join(final, ManifestName)); err != nil {
		return s, nil // no image to keep
	}
	if swappable(final) {
		s.Dir, s.swap = final+".rtcr-new", true
		if err := os.RemoveAll(s.Dir); err != nil {
			return nil, fmt.Errorf("image directory %s: %w", s.Dir, err)
		}
		return s, nil
	}
	if err := os.Remove(filepath.Join(final, ManifestName)); err != nil {
		return nil, fmt.Errorf("image directory %s: remove the old manifest: %w", final, err)
	}
	return s, nil
}

// swappable reports whether dir holds only image files and can be renamed
// (it is not a mount point, nor the working directory).
func swappable(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		n := e.Name()
		if n != ManifestName && !(strings.HasPrefix(n, "pages-") && strings.HasSuffix(n, ".img")) {
			return false
		}
	}
	var st, parent, cwd unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil || unix.Stat(".", &cwd) != nil {
		return false
	}
	// Not the working directory: it would be left in the removed one.
	isCwd := st.Dev == cwd.Dev && st.Ino == cwd.Ino
	return st.Dev == parent.Dev && dir != filepath.Dir(dir) && !isCwd
}

// Commit makes the written image the image of Final; pageFiles are the
// page files it uses.
func (s *Stage) Commit(pageFiles []string) error {
	if s.swap {
		var st unix.Stat_t
		if unix.Stat(s.Final, &st) == nil {
			_ = os.Chmod(s.Dir, os.FileMode(st.Mode&0o7777)) // keep the user's mode
		}
		return replaceDir(s.Final, s.Dir)
	}
	keep := map[string]bool{}
	for _, f := range pageFiles {
		keep[f] = true
	}
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "pages-") && strings.HasSuffix(n, ".img") && !keep[n] {
			if err := os.Remove(filepath.Join(s.Dir, n)); err != nil {
				return fmt.Errorf("remove stale %s: %w", n, err)
			}
		}
	}
	return nil
}

// Abort drops what a failed dump wrote beside an existing image.
func (s *Stage) Abort() {
	if s.swap {
		_ = os.RemoveAll(s.Dir)
	}
}

// replaceDir puts the complete image directory next in the place of the
// image directory dir: dir moves aside, next takes its name, the old one
// is removed. A complete image stays at dir or at dir.rtcr-old throughout.
func replaceDir(dir, next string) error {
	old := dir + ".rtcr-old"
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("replace image %s: %w", dir, err)
	}
	if err := os.Rename(dir, old); err != nil {
		return fmt.Errorf("replace image %s: %w", dir, err)
	}
	if err := os.Rename(next, dir); err != nil {
		_ = os.Rename(old, dir)
		return fmt.Errorf("replace image %s: %w", dir, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("replace image %s: %w", dir, err)
	}
	return os.RemoveAll(old)
}
