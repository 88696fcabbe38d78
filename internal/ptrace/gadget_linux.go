package ptrace

import (
	"bytes"
	"sync"

	"github.com/rtcr/rtcr/internal/procfs"
)

// Gadget is a sigreturn sequence in a process's code: `mov $15, %eax`
// (or %rax) followed by `syscall`, as every C library's signal restorer
// and Go's runtime have it.
type Gadget struct {
	// Addr is the address of the mov; End the address just after the
	// syscall instruction.
	Addr, End uint64
}

// sigreturnCode lists the encodings of the gadget rtcr looks for.
var sigreturnCode = [][]byte{
	{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}, // mov $0xf,%rax; syscall (glibc, musl, Go)
	{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},             // mov $0xf,%eax; syscall
}

// maxGadgetScan bounds how much code FindSigreturnGadget reads.
const maxGadgetScan = 256 << 20

// FindSigreturnGadget looks for a sigreturn gadget in the executable
// mappings of process pid (read with process_vm_readv, so it must be
// stopped or its code must not change). ok is false when it has none.
func FindSigreturnGadget(pid int) (g Gadget, ok bool, err error) {
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		return g, false, err
	}
	return findSigreturnGadget(pid, maps)
}

// findSigreturnGadget is FindSigreturnGadget with the process's maps read.
func findSigreturnGadget(pid int, maps []procfs.Mapping) (g Gadget, ok bool, err error) {
	const chunk = 1 << 20
	var buf []byte // made when a mapping must be read, as big as it needs
	scanned := uint64(0)
	for _, m := range maps {
		if !m.Exec || !m.Read || m.Path == "[vsyscall]" {
			continue
		}
		key := gadgetKey{m.DevMajor, m.DevMinor, m.Inode, m.Offset}
		if m.Inode != 0 {
			if off, known := gadgetCache.get(key); known {
				if off < 0 {
					continue // this file's code has none
				}
				if g, ok := checkGadget(pid, m.Start+uint64(off)); ok {
					return g, true, nil
				}
			}
		}
		scannedAll := false
		if need := min(chunk+16, m.End-m.Start); uint64(len(buf)) < need {
			buf = make([]byte, need)
		}
		for a := m.Start; a < m.End && scanned < maxGadgetScan; a += chunk {
			n := min(uint64(len(buf)), m.End-a)
			b := buf[:n]
			if err := ReadMem(pid, a, b); err != nil {
				break // unreadable (e.g. a device mapping): look elsewhere
			}
			scanned += n
			for _, code := range sigreturnCode {
				if i := bytes.Index(b, code); i >= 0 {
					addr := a + uint64(i)
					if m.Inode != 0 {
						gadgetCache.put(key, int64(addr-m.Start))
					}
					return Gadget{Addr: addr, End: addr + uint64(len(code))}, true, nil
				}
			}
			scannedAll = scannedAll || a+n >= m.End // read to the end
		}
		if m.Inode != 0 && scannedAll {
			gadgetCache.put(key, -1)
		}
	}
	return g, false, nil
}

// gadgetKey names the code of a file mapping: device, inode and offset.
type gadgetKey struct {
	major, minor uint32
	inode, off   uint64
}

// gadgetCache remembers where in a file's mapped code a gadget is (or -1:
// nowhere), so that a tree of processes running the same binaries is
// searched once. A remembered place is checked before use.
var gadgetCache = &offsetCache{m: map[gadgetKey]int64{}}

// offsetCache is a map safe for concurrent use.
type offsetCache struct {
	mu sync.Mutex
	m  map[gadgetKey]int64
}

func (c *offsetCache) get(k gadgetKey) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *offsetCache) put(k gadgetKey, off int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = off
}

// checkGadget returns the gadget at addr if the code there is one.
func checkGadget(pid int, addr uint64) (Gadget, bool) {
	var b [9]byte
	for _, code := range sigreturnCode {
		if err := ReadMem(pid, addr, b[:len(code)]); err == nil && bytes.Equal(b[:len(code)], code) {
			return Gadget{Addr: addr, End: addr + uint64(len(code))}, true
		}
	}
	return Gadget{}, false
}
