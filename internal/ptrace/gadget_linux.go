package ptrace

import (
	"bytes"
	"fmt"
	"os"
	"strings"

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
	const chunk = 1 << 20
	buf := make([]byte, chunk+16)
	scanned := uint64(0)
	for _, m := range maps {
		if !m.Exec || !m.Read || m.Path == "[vsyscall]" {
			continue
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
					return Gadget{Addr: addr, End: addr + uint64(len(code))}, true, nil
				}
			}
		}
	}
	return g, false, nil
}

// readTaskStatusLine returns the value of the line of /proc/TID/status
// that starts with key ("" when there is none).
func readTaskStatusLine(tid int, key string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", nil
}

// splitFields splits a status value into its words.
func splitFields(s string) []string { return strings.Fields(s) }
