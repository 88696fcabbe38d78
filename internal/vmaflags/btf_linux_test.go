package vmaflags

import (
	"errors"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rtcr/rtcr/internal/procfs"
)

// TestKernelBTF: the offsets the iterator needs are found in this
// kernel's BTF (skipped where the kernel has none).
func TestKernelBTF(t *testing.T) {
	s, err := loadBTF("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Skip(err)
	}
	l, err := layoutFrom(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", l)
}

// TestIterOwn: the iterator lists this process's mappings as
// /proc/self/maps does (same ranges, in order, [vsyscall] aside).
func TestIterOwn(t *testing.T) {
	it, err := Open(os.Getpid())
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	t0 := time.Now()
	vmas, err := it.Read(nil)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	t0 = time.Now()
	if _, err := procfs.ReadSmaps(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	t.Logf("iterator read %v, smaps %v", took, time.Since(t0))
	maps, err := procfs.ReadMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d VMAs, first %+v", len(vmas), vmas[0])
	j := 0
	for _, m := range maps {
		if m.Path == "[vsyscall]" {
			continue
		}
		if j >= len(vmas) || vmas[j].Start != m.Start || vmas[j].End != m.End {
			t.Fatalf("mapping %d: maps %#x-%#x, iterator %+v", j, m.Start, m.End, vmas[min(j, len(vmas)-1)])
		}
		j++
	}
}

// TestIterSeesChanges: a flag set on a whole mapping (madvise) changes
// no line of /proc/PID/maps but changes the iterator's flags word, and
// moves the mmap lock's sequence count; so does mapping and unmapping.
func TestIterSeesChanges(t *testing.T) {
	it, err := Open(os.Getpid())
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	b, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	start := uint64(uintptr(unsafe.Pointer(&b[0])))
	find := func() VMA {
		vmas, err := it.Read(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vmas {
			if v.Start <= start && start < v.End {
				return v
			}
		}
		t.Fatalf("no VMA holds %#x", start)
		return VMA{}
	}
	before := find()
	if before.LockSeq%2 != 0 {
		t.Fatalf("sequence count %d odd with no writer", before.LockSeq)
	}
	if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
		t.Fatal(err)
	}
	after := find()
	if after.Flags == before.Flags || after.LockSeq == before.LockSeq {
		t.Fatalf("madvise(MADV_DONTDUMP): flags %#x -> %#x, sequence %d -> %d", before.Flags, after.Flags, before.LockSeq, after.LockSeq)
	}
	other, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	unix.Munmap(other)
	if last := find(); last.LockSeq == after.LockSeq {
		t.Fatalf("mmap and munmap left the sequence count at %d", last.LockSeq)
	}
}
