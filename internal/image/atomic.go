package image

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// writeBufferSize is the size of the buffer WriteFileAtomic puts in front
// of the temporary file.
const writeBufferSize = 1 << 20

// writers keeps the buffered writers of finished files for the next ones:
// a dump writes a page file per process, and a fresh 1 MiB buffer each
// cost milliseconds (allocated, cleared, faulted in) of a tree's freeze.
// Not a sync.Pool, which every garbage collection empties: the next
// checkpoint of a periodic series paid it again in its freeze.
var writers = writerPool{free: make(chan *bufio.Writer, 8)}

// writerPool holds at most 8 idle writers.
type writerPool struct{ free chan *bufio.Writer }

// Get returns an idle writer, or a new one.
func (p *writerPool) Get() *bufio.Writer {
	select {
	case w := <-p.free:
		return w
	default:
		return bufio.NewWriterSize(nil, writeBufferSize)
	}
}

// Put keeps w for a later Get, if there is room.
func (p *writerPool) Put(w *bufio.Writer) {
	w.Reset(nil)
	select {
	case p.free <- w:
	default:
	}
}

// WriteFileAtomic creates dir/name with mode 0600 holding the bytes that
// write produces, so that dir/name either keeps its old state or holds the
// complete new content, even across a crash.
//
// It opens dir and writes through the descriptor as writeFileAt does. A
// dump writes through its Stage (Stage.WriteFile) instead, into the
// directory it checked. name must be a plain file name (no '/').
func WriteFileAtomic(dir, name string, write func(w io.Writer) error) error {
	d, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	defer d.Close()
	return writeFileAt(d, dir, name, write, true)
}

// WriteFileAtomicNoSync is WriteFileAtomic without its fsyncs: the file
// is complete or absent, but a crash may lose it. For files that live
// only as long as the process that writes them needs them (a post-copy
// migration's image, removed at its end).
func WriteFileAtomicNoSync(dir, name string, write func(w io.Writer) error) error {
	d, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	defer d.Close()
	return writeFileAt(d, dir, name, write, false)
}

// writeFileAt writes name atomically in the open directory d (dir is its
// path, for messages). It creates a temporary file ".NAME.tmp-N" in d
// (openat, O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), calls write with a
// buffered writer around it, flushes, fsyncs and closes the file, renames
// it to name (renameat within d) and fsyncs d (the fsyncs only with
// sync). On any error (or a panic in write) the temporary file is removed
// (unlinkat in d).
func writeFileAt(d *os.File, dir, name string, write func(w io.Writer) error, sync bool) (err error) {
	path := filepath.Join(dir, name)
	if !isPlainName(name) {
		return fmt.Errorf("writing %s: %q is not a plain file name", path, name)
	}
	f, tmp, err := createTempAt(d, dir, "."+name+".tmp-")
	if err != nil {
		return fmt.Errorf("writing %s: creating temporary file: %w", path, err)
	}
	closed, renamed := false, false
	defer func() {
		if renamed {
			return
		}
		// Also reached when write panics: never leave a temp file behind.
		if !closed {
			f.Close()
		}
		_ = unix.Unlinkat(int(d.Fd()), tmp, 0)
	}()

	// Mode 0600 whatever the umask.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("writing %s: chmod %s: %w", path, tmp, err)
	}
	bw := writers.Get()
	bw.Reset(f)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	if err := write(bw); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("writing %s: fsync: %w", path, err)
		}
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: close: %w", path, err)
	}
	if err := unix.Renameat(int(d.Fd()), tmp, int(d.Fd()), name); err != nil {
		return fmt.Errorf("writing %s: rename %s: %w", path, tmp, err)
	}
	renamed = true
	if !sync {
		return nil
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("writing %s: fsync %s: %w", path, dir, err)
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
