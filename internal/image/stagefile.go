package image

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// StageFile is a file of a stage written across several calls, as
// Stage.WriteFile writes one in a single call: into a temporary file
// ".NAME.tmp-N" that becomes NAME only at Finish. A dump's pre-copy rounds
// write a page file while the tree runs and the frozen dump appends the
// rest (see rtcr's precopy_linux.go). A StageFile not finished is removed
// by Discard, or by the stage's Abort (a temporary file), or by the next
// dump into the directory (a killed one's).
type StageFile struct {
	s    *Stage
	name string // the final name
	tmp  string // the temporary name in s.dir
	f    *os.File
	bw   *bufio.Writer
}

// OpenFile starts writing the file name (a plain name) into the stage's
// directory.
func (s *Stage) OpenFile(name string) (*StageFile, error) {
	path := filepath.Join(s.Dir, name)
	if s.dir == nil {
		return nil, fmt.Errorf("writing %s: the dump into %s is over", name, s.Dir)
	}
	if !isPlainName(name) {
		return nil, fmt.Errorf("writing %s: %q is not a plain file name", path, name)
	}
	f, tmp, err := createTempAt(s.dir, s.Dir, "."+name+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("writing %s: creating temporary file: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		_ = unix.Unlinkat(int(s.dir.Fd()), tmp, 0)
		return nil, fmt.Errorf("writing %s: chmod %s: %w", path, tmp, err)
	}
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(f)
	return &StageFile{s: s, name: name, tmp: tmp, f: f, bw: bw}, nil
}

// Write appends p to the file.
func (sf *StageFile) Write(p []byte) (int, error) { return sf.bw.Write(p) }

// Sync flushes what was written and writes it back to disk, so that the
// fsync of Finish (in a dump's freeze) has little left to do (with
// Stage.NoSync it only flushes).
func (sf *StageFile) Sync() error {
	if err := sf.bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(sf.s.Dir, sf.name), err)
	}
	if sf.s.NoSync {
		return nil
	}
	if err := unix.Fdatasync(int(sf.f.Fd())); err != nil {
		return fmt.Errorf("writing %s: fdatasync: %w", filepath.Join(sf.s.Dir, sf.name), err)
	}
	return nil
}

// ReadAt reads back what was written up to the last Sync (a migration's
// pre-copy sends the bytes its rounds wrote while the tree runs).
func (sf *StageFile) ReadAt(p []byte, off int64) (int, error) { return sf.f.ReadAt(p, off) }

// Finish flushes, fsyncs and closes the file, renames it to its name and
// fsyncs the directory, as Stage.WriteFile does at its end (no fsync
// with Stage.NoSync). On an error
// the temporary file is removed.
func (sf *StageFile) Finish() error {
	path := filepath.Join(sf.s.Dir, sf.name)
	err := sf.bw.Flush()
	if err == nil && !sf.s.NoSync {
		err = sf.f.Sync()
	}
	if cerr := sf.f.Close(); err == nil {
		err = cerr
	}
	sf.f = nil
	sf.putWriter()
	if err == nil && sf.s.dir == nil {
		err = fmt.Errorf("the dump into %s is over", sf.s.Dir)
	}
	if err == nil {
		err = unix.Renameat(int(sf.s.dir.Fd()), sf.tmp, int(sf.s.dir.Fd()), sf.name)
	}
	if err == nil && !sf.s.NoSync {
		err = sf.s.dir.Sync()
	}
	if err != nil {
		sf.Discard()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	sf.tmp = ""
	return nil
}

// putWriter gives the buffered writer back to the pool the stage's files
// share (a fresh 1 MiB buffer per page file cost milliseconds of a
// tree's freeze).
func (sf *StageFile) putWriter() {
	if sf.bw != nil {
		sf.bw.Reset(nil)
		writers.Put(sf.bw)
		sf.bw = nil
	}
}

// Discard closes and removes the file unless Finish made it the stage's.
func (sf *StageFile) Discard() {
	if sf.f != nil {
		sf.f.Close()
		sf.f = nil
	}
	sf.putWriter()
	if sf.s.dir != nil && sf.tmp != "" {
		_ = unix.Unlinkat(int(sf.s.dir.Fd()), sf.tmp, 0)
	}
	sf.tmp = ""
}
