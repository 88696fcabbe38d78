package procfs

import (
	"fmt"
	"os"
	"unsafe"
)

// Bits of a /proc/PID/pagemap entry, see proc_pid_pagemap(5) and the kernel's
// Documentation/admin-guide/mm/pagemap.rst.
const (
	// PM_PRESENT: the page is present in RAM.
	PM_PRESENT uint64 = 1 << 63
	// PM_SWAP: the page is swapped out.
	PM_SWAP uint64 = 1 << 62
	// PM_FILE: the page is a file page or shared anonymous memory.
	PM_FILE uint64 = 1 << 61
	// PM_EXCLUSIVE: the page is mapped exclusively (only by this process).
	PM_EXCLUSIVE uint64 = 1 << 56
	// PM_SOFT_DIRTY: the page was written since soft-dirty bits were cleared.
	PM_SOFT_DIRTY uint64 = 1 << 55
	// PM_PFN_MASK selects bits 0-54: the page frame number when present
	// (zero without CAP_SYS_ADMIN), or swap type and offset when swapped.
	PM_PFN_MASK uint64 = 1<<55 - 1
)

// pageSize is the page size of x86_64.
const pageSize = 4096

// MaxPagemapPages is the largest number of pages one Pagemap.Read accepts
// (512 GiB of address space, a 1 GiB entry buffer). Callers read larger
// ranges, e.g. huge PROT_NONE reservations, in chunks.
const MaxPagemapPages = 1 << 27

// Pagemap is an open /proc/PID/pagemap file.
type Pagemap struct {
	f   *os.File
	pid int
}

// OpenPagemap opens /proc/PID/pagemap. The caller must Close it.
func OpenPagemap(pid int) (*Pagemap, error) {
	f, err := os.Open(procPath(pid, "pagemap"))
	if err != nil {
		return nil, err
	}
	return &Pagemap{f: f, pid: pid}, nil
}

// Read returns the pagemap entries of the pages in [start, end), one per
// 4096-byte page, read with a single pread. start and end must be page
// aligned and span at most MaxPagemapPages pages. The entries are stored in
// out, which is reused if its capacity suffices and reallocated otherwise;
// the result has length (end-start)/4096. Addresses above the user address
// space (e.g. the [vsyscall] page) have no entries and make Read fail.
func (p *Pagemap) Read(start, end uint64, out []uint64) ([]uint64, error) {
	if start%pageSize != 0 || end%pageSize != 0 || end < start {
		return out[:0], fmt.Errorf("read /proc/%d/pagemap: bad range %#x-%#x", p.pid, start, end)
	}
	n := (end - start) / pageSize
	if n > MaxPagemapPages {
		return out[:0], fmt.Errorf("read /proc/%d/pagemap: range %#x-%#x too large", p.pid, start, end)
	}
	if n == 0 {
		return out[:0], nil
	}
	if uint64(cap(out)) < n {
		out = make([]uint64, n)
	}
	out = out[:n]
	// Entries are native-endian u64s: read them straight into out.
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), n*8)
	if _, err := p.f.ReadAt(buf, int64(start/pageSize*8)); err != nil {
		return out[:0], fmt.Errorf("read /proc/%d/pagemap %#x-%#x: %w", p.pid, start, end, err)
	}
	return out, nil
}

// Close closes the pagemap file.
func (p *Pagemap) Close() error {
	return p.f.Close()
}
