package image

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
