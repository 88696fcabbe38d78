package ptrace

// XSaveEnd exposes xsaveEnd to the tests.
var XSaveEnd = xsaveEnd

// SupportedXFeatures returns the xsave features the CPU supports (CPUID
// leaf 0xD, sub-leaf 0, edx:eax).
func SupportedXFeatures() uint64 {
	a, _, _, d := cpuid(0xd, 0)
	return uint64(d)<<32 | uint64(a)
}

// SetBatchHook sets the hook a batch calls when running and when stopped
// (nil: none); true abandons the batch there.
func SetBatchHook(f func(stage string) bool) { batchHook = f }
