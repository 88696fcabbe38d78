package image

import (
	"fmt"
	"hash/crc32"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// PageCheck verifies the chunks of a page file mapped without reading
// it (OpenPagesLazy), each when first used: a lazy restore starts its
// processes before it has read their pages.
type PageCheck struct {
	data []byte
	sums []uint32
	name string
	mu   sync.Mutex
	ok   []bool
}

// Check verifies every chunk of the page file that [off, off+n) touches
// and has not been verified yet.
func (c *PageCheck) Check(off, n int64) error {
	if c == nil || n <= 0 {
		return nil
	}
	if off < 0 || off+n > int64(len(c.data)) {
		return corruptf("%s: bytes %d-%d beyond its %d bytes", c.name, off, off+n, len(c.data))
	}
	for i := off / PageChunkSize; i*PageChunkSize < off+n; i++ {
		c.mu.Lock()
		done := c.ok[i]
		c.mu.Unlock()
		if done {
			continue
		}
		start := i * PageChunkSize
		chunk := c.data[start:min(start+PageChunkSize, int64(len(c.data)))]
		if got := crc32.Update(0, castagnoli, chunk); got != c.sums[i] {
			return corruptf("%s: checksum mismatch in chunk %d at byte offset %d (crc32c %#08x, want %#08x)", c.name, i, start, got, c.sums[i])
		}
		c.mu.Lock()
		c.ok[i] = true
		c.mu.Unlock()
	}
	return nil
}

// OpenPagesLazy is OpenPages without reading the file: it is mapped
// (not populated) and its checksums are verified chunk by chunk through
// the PageCheck, which the caller must ask before it uses any bytes. A
// page file of another user than root and the restorer is read and
// verified at once, as OpenPages does (a copy, so that it cannot shrink
// under the mapping); its PageCheck is then nil (nothing left to check).
func (d *Dir) OpenPagesLazy(p *Process) (data []byte, check *PageCheck, close func() error, err error) {
	if p.PageFile == "" && p.PageFileSize == 0 {
		return nil, nil, func() error { return nil }, nil
	}
	path := d.Path + "/" + p.PageFile
	if !isPlainName(p.PageFile) {
		return nil, nil, nil, corruptf("%s: page file name %q of pid %d is not a plain file name", path, p.PageFile, p.Pid)
	}
	fd, err := unix.Openat(int(d.f.Fd()), p.PageFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening page file %s of pid %d: %w", path, p.Pid, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // a mapping outlives the descriptor
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, nil, fmt.Errorf("page file %s of pid %d: %w", path, p.Pid, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, nil, corruptf("%s: not a regular file (mode %#o)", path, st.Mode)
	}
	if err := d.admit(path, &st); err != nil {
		return nil, nil, nil, err
	}
	if st.Uid != 0 && st.Uid != d.uid {
		data, close, err = loadPages(f, st.Size, path, p, true)
		return data, nil, close, err
	}
	switch {
	case st.Size != p.PageFileSize:
		return nil, nil, nil, corruptf("%s: manifest says %d bytes, file has %d", path, p.PageFileSize, st.Size)
	case st.Size == 0:
		if err := VerifyPages(nil, p.PageChecksums, path); err != nil {
			return nil, nil, nil, err
		}
		return nil, nil, func() error { return nil }, nil
	}
	want := (st.Size + PageChunkSize - 1) / PageChunkSize
	if int64(len(p.PageChecksums)) != want {
		return nil, nil, nil, corruptf("%s: %d checksums for %d bytes, want %d", path, len(p.PageChecksums), st.Size, want)
	}
	data, err = unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	check = &PageCheck{data: data, sums: p.PageChecksums, name: path, ok: make([]bool, want)}
	return data, check, func() error { return unix.Munmap(data) }, nil
}
