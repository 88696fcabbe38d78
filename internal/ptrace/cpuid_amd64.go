package ptrace

// cpuid runs the CPUID instruction with eax = leaf and ecx = sub.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// xsaveEnd returns where, in the standard (non-compacted) xsave format,
// the last of the state components in features ends: CPUID leaf 0xD,
// sub-leaf i gives component i's size (eax) and offset (ebx). The legacy
// area and the header (576 bytes) always count.
func xsaveEnd(features uint64) int {
	end := 512 + 64
	for i := uint32(2); i < 64; i++ {
		if features&(1<<i) == 0 {
			continue
		}
		size, off, _, _ := cpuid(0xd, i)
		if int(off+size) > end {
			end = int(off + size)
		}
	}
	return end
}
