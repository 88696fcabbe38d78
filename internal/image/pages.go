package image

import (
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// castagnoli is the CRC-32C table; crc32.Update recognises it and uses the
// CPU's CRC32 instruction (SSE 4.2) when available.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PageWriter is an io.Writer that passes bytes through to an underlying
// writer and records the CRC-32C of each PageChunkSize chunk written,
// whatever the boundaries of the individual Write calls. Its checksums are
// the Process.PageChecksums of the page file it writes.
type PageWriter struct {
	w    io.Writer
	off  int64    // bytes written so far
	crc  uint32   // CRC of the current, incomplete chunk
	sums []uint32 // CRCs of the complete chunks
}

// NewPageWriter returns a PageWriter writing to w.
func NewPageWriter(w io.Writer) *PageWriter {
	return &PageWriter{w: w}
}

// Write writes p to the underlying writer and checksums the bytes it
// accepted.
func (pw *PageWriter) Write(p []byte) (int, error) {
	n, err := pw.w.Write(p)
	if n < 0 || n > len(p) {
		// A broken writer; do not let it corrupt the bookkeeping.
		return 0, fmt.Errorf("page writer: underlying writer returned count %d for %d bytes", n, len(p))
	}
	b := p[:n]
	for len(b) > 0 {
		room := PageChunkSize - int(pw.off%PageChunkSize)
		k := min(room, len(b))
		pw.crc = crc32.Update(pw.crc, castagnoli, b[:k])
		pw.off += int64(k)
		b = b[k:]
		if pw.off%PageChunkSize == 0 {
			pw.sums = append(pw.sums, pw.crc)
			pw.crc = 0
		}
	}
	return n, err
}

// Offset returns the number of bytes written so far, i.e. the page-file
// offset of the next byte.
func (pw *PageWriter) Offset() int64 {
	return pw.off
}

// Checksums returns the CRC-32C of every chunk written so far, the last
// (partial) chunk included. Call it after the final Write; it does not
// change the writer's state, so calling it earlier is harmless.
func (pw *PageWriter) Checksums() []uint32 {
	sums := slices.Clone(pw.sums)
	if pw.off%PageChunkSize != 0 {
		sums = append(sums, pw.crc)
	}
	return sums
}

// VerifyPages checks data against its per-chunk CRC-32C checksums sums.
// name (the page file path) is used in errors, which wrap ErrCorrupt and
// give the byte offset of the first bad chunk.
func VerifyPages(data []byte, sums []uint32, name string) error {
	want := (len(data) + PageChunkSize - 1) / PageChunkSize
	if len(sums) != want {
		return corruptf("%s: %d checksums for %d bytes, want %d", name, len(sums), len(data), want)
	}
	// The chunks are independent: check them on every CPU, and report
	// the first bad one.
	workers := min(runtime.NumCPU(), len(sums))
	bad := make([]int, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		bad[w] = -1
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(sums); i += workers {
				off := i * PageChunkSize
				if crc32.Update(0, castagnoli, data[off:min(off+PageChunkSize, len(data))]) != sums[i] {
					bad[w] = i
					return
				}
			}
		}(w)
	}
	wg.Wait()
	first := -1
	for _, i := range bad {
		if i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		off := first * PageChunkSize
		got := crc32.Update(0, castagnoli, data[off:min(off+PageChunkSize, len(data))])
		return corruptf("%s: checksum mismatch in chunk %d at byte offset %d (crc32c %#08x, want %#08x)",
			name, first, off, got, sums[first])
	}
	return nil
}

// OpenPages maps the page file of p (dir/p.PageFile) read-only, after
// checking that its size is p.PageFileSize, and verifies its checksums.
// It returns the mapped bytes and a function that unmaps them; data must
// not be used after close. An empty page file gives nil data.
//
// The mapping is MAP_PRIVATE|MAP_POPULATE: the file is read in at once.
// Truncating the file while it is mapped would make accesses fault
// (SIGBUS), and writing it would change the verified bytes: only the
// file's owner (or root) can, since image files are private (0600 in a
// 0700 directory). A restore of an image owned by someone else copies the
// file instead (Dir.OpenPages).
func OpenPages(dir string, p *Process) (data []byte, close func() error, err error) {
	if p.PageFile == "" && p.PageFileSize == 0 {
		return nil, func() error { return nil }, nil // no pages saved, no page file
	}
	path := filepath.Join(dir, p.PageFile)
	if !isPlainName(p.PageFile) {
		return nil, nil, corruptf("%s: page file name %q of pid %d is not a plain file name", path, p.PageFile, p.Pid)
	}
	// O_NONBLOCK and O_NOFOLLOW: a FIFO or a link in its place is refused
	// below (not a regular file) instead of blocking or leading elsewhere.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening page file of pid %d: %w", p.Pid, err)
	}
	defer f.Close() // the mapping outlives the descriptor
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("page file of pid %d: %w", p.Pid, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, corruptf("%s: not a regular file", path)
	}
	return loadPages(f, fi.Size(), path, p, false, false)
}

// loadPages checks that the page file f (path, size bytes) has the size
// p's manifest says, maps it (or, with copyIn, reads it into anonymous
// memory of its own, which the file's owner can no longer change) and
// verifies its checksums. See OpenPages.
func loadPages(f *os.File, size int64, path string, p *Process, copyIn, verified bool) (data []byte, close func() error, err error) {
	switch {
	case size < p.PageFileSize:
		return nil, nil, corruptf("%s: truncated: manifest says %d bytes, file has %d", path, p.PageFileSize, size)
	case size > p.PageFileSize:
		return nil, nil, corruptf("%s: has extra bytes: manifest says %d bytes, file has %d", path, p.PageFileSize, size)
	}
	if size == 0 {
		if err := VerifyPages(nil, p.PageChecksums, path); err != nil {
			return nil, nil, err
		}
		return nil, func() error { return nil }, nil
	}
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("%s: %d bytes is too large to map", path, size)
	}
	if copyIn {
		// Populated anonymous memory: read fills it without page faults.
		data, err = unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err == nil {
			if _, rerr := io.ReadFull(io.NewSectionReader(f, 0, size), data); rerr != nil {
				unix.Munmap(data)
				return nil, nil, fmt.Errorf("reading %s: %w", path, rerr)
			}
			err = unix.Mprotect(data, unix.PROT_READ)
		}
	} else {
		data, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE)
	}
	if err != nil {
		if data != nil {
			unix.Munmap(data)
		}
		return nil, nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	if verified {
		// Checked by the caller: only the count of checksums is.
		if want := (len(data) + PageChunkSize - 1) / PageChunkSize; len(p.PageChecksums) != want {
			unix.Munmap(data)
			return nil, nil, corruptf("%s: %d checksums for %d bytes, want %d", path, len(p.PageChecksums), len(data), want)
		}
	} else if err := VerifyPages(data, p.PageChecksums, path); err != nil {
		unix.Munmap(data)
		return nil, nil, err
	}
	unmapped := false
	return data, func() error {
		if unmapped {
			return nil
		}
		unmapped = true
		if err := unix.Munmap(data); err != nil {
			return fmt.Errorf("unmapping %s: %w", path, err)
		}
		return nil
	}, nil
}
