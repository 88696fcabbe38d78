package procfs

import (
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// capSysAdmin is the CAP_SYS_ADMIN bit of a capability set.
const capSysAdmin = 1 << 21

// Since Linux 4.2, pagemap hides page frame numbers (they read as 0) from
// readers without CAP_SYS_ADMIN, but the flag bits (present, swap, file,
// exclusive, soft-dirty) stay visible, see proc_pid_pagemap(5). So the
// present bit is checked for everybody and the PFN only with CAP_SYS_ADMIN.
func TestLivePagemap(t *testing.T) {
	mem, err := syscall.Mmap(-1, 0, 4*pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	mem[0] = 1          // page 0 touched
	mem[2*pageSize] = 1 // page 2 touched; pages 1 and 3 never touched
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))

	st, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	admin := st.CapEff&capSysAdmin != 0
	if !admin {
		t.Log("no CAP_SYS_ADMIN: PFNs are hidden, checking flag bits only")
	}

	pm, err := OpenPagemap(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	buf := make([]uint64, 0, 8)
	got, err := pm.Read(start, start+4*pageSize, buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || &got[0] != &buf[:1][0] {
		t.Fatalf("got %d entries (buffer reused: %v), want 4 in buf", len(got), &got[0] == &buf[:1][0])
	}
	for i, e := range got {
		touched := i%2 == 0
		if present := e&PM_PRESENT != 0; present != touched {
			t.Errorf("page %d: entry %#x, present %v, want %v", i, e, present, touched)
		}
		if touched && e&PM_EXCLUSIVE == 0 {
			t.Errorf("page %d: entry %#x not exclusive", i, e)
		}
		if touched && e&(PM_SWAP|PM_FILE) != 0 {
			t.Errorf("page %d: entry %#x has swap or file bit", i, e)
		}
		if touched && admin && e&PM_PFN_MASK == 0 {
			t.Errorf("page %d: entry %#x has no PFN despite CAP_SYS_ADMIN", i, e)
		}
	}

	// A larger range reallocates; an empty one returns no entries.
	big, err := pm.Read(start, start+4*pageSize, make([]uint64, 1))
	if err != nil || len(big) != 4 || big[0] != got[0] {
		t.Errorf("reallocating read: %x, %v", big, err)
	}
	if e, err := pm.Read(start, start, buf); err != nil || len(e) != 0 {
		t.Errorf("empty read: %v, %v", e, err)
	}
}

func TestPagemapBadRange(t *testing.T) {
	pm, err := OpenPagemap(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	tests := []struct{ start, end uint64 }{
		{1, pageSize},
		{0, pageSize + 1},
		{2 * pageSize, pageSize},
		{0, 1 << 63},
		// Above the user address space: no entries.
		{0xffffffffff600000, 0xffffffffff601000},
	}
	for _, tt := range tests {
		if e, err := pm.Read(tt.start, tt.end, nil); err == nil {
			t.Errorf("Read(%#x, %#x) = %x, want an error", tt.start, tt.end, e)
		}
	}
	if err := pm.Close(); err != nil {
		t.Error(err)
	}
	if _, err := pm.Read(0, pageSize, nil); err == nil {
		t.Error("Read after Close succeeded")
	}
}
