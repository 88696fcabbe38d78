package rtcr

import (
	"fmt"
	"io"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// An incremental dump that leaves the tree running copies the written
// pages into memory while the tree is frozen and writes the page files and
// the manifest after the release: its freeze then holds only the scan and
// the copy, not the disk. The memory used is the size of the increment.
// The image is committed (manifest last) exactly as otherwise; a failure
// while writing leaves no image, and the tree runs on in any case.

// deferred is the part of an image still to be written after the release.
type deferred struct {
	files []*memFile
	c     *image.Checkpoint
}

// memFile is a page file held in memory: chunks of memory populated by the
// kernel (no page faults while the tree is frozen).
type memFile struct {
	name   string
	chunks [][]byte
}

// memChunk is the size of one chunk of a memFile.
const memChunk = 8 << 20

// Write appends p.
func (f *memFile) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := len(f.chunks) - 1
		if k < 0 || len(f.chunks[k]) == cap(f.chunks[k]) {
			b, err := unix.Mmap(-1, 0, memChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
			if err != nil {
				return n - len(p), fmt.Errorf("memory for the pages of %s: %w", f.name, err)
			}
			f.chunks = append(f.chunks, b[:0])
			k++
		}
		c := f.chunks[k]
		m := copy(c[len(c):cap(c)], p)
		f.chunks[k] = c[:len(c)+m]
		p = p[m:]
	}
	return n, nil
}

// Keep takes b (mapped memory, see mem.Keeper) as the next chunk.
func (f *memFile) Keep(b []byte) error {
	f.chunks = append(f.chunks, b)
	return nil
}

// WriteTo writes the contents to w.
func (f *memFile) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for _, c := range f.chunks {
		n, err := w.Write(c)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// free unmaps the chunks.
func (f *memFile) free() {
	for _, c := range f.chunks {
		_ = unix.Munmap(c[:cap(c)])
	}
	f.chunks = nil
}

// write writes the page files, then the manifest (the commit point).
func (d *deferred) write(stage *image.Stage) error {
	defer d.free()
	for _, f := range d.files {
		if err := stage.WriteFile(f.name, func(w io.Writer) error {
			_, err := f.WriteTo(w)
			return err
		}); err != nil {
			return err
		}
	}
	return stage.WriteManifest(d.c)
}

func (d *deferred) free() {
	if d == nil {
		return
	}
	for _, f := range d.files {
		f.free()
	}
}

// keepWriter is what an incremental dump copies pages into during the
// freeze: the copy buffers go to f as they are (mem.Keeper), and pw
// (writing nowhere) computes the page file's size and checksums on the
// way.
type keepWriter struct {
	pw *image.PageWriter
	f  *memFile
}

func newKeepWriter(f *memFile) *keepWriter {
	return &keepWriter{pw: image.NewPageWriter(io.Discard), f: f}
}

// Write copies p into f (the copier only writes through Keep).
func (k *keepWriter) Write(p []byte) (int, error) {
	if _, err := k.pw.Write(p); err != nil {
		return 0, err
	}
	return k.f.Write(p)
}

// Keep checksums b and hands it to f.
func (k *keepWriter) Keep(b []byte) error {
	if _, err := k.pw.Write(b); err != nil {
		return err
	}
	return k.f.Keep(b)
}
