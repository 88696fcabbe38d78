package stub

import (
	"testing"

	"github.com/rtcr/rtcr/internal/ptrace"
)

// TestKeeperCodeImmediates: the patched immediates of keeperCode are where
// its instructions take them (mov edi, imm32; mov rdi, imm64), and the
// code fits below the argument area.
func TestKeeperCodeImmediates(t *testing.T) {
	if keeperCode[keeperPidfdAt-1] != 0xbf {
		t.Errorf("byte before the pidfd is %#x, want 0xbf (mov edi, imm32)", keeperCode[keeperPidfdAt-1])
	}
	if keeperCode[keeperFdsAt-2] != 0x48 || keeperCode[keeperFdsAt-1] != 0xbf {
		t.Errorf("bytes before the pollfds' address are %#x %#x, want 0x48 0xbf (mov rdi, imm64)", keeperCode[keeperFdsAt-2], keeperCode[keeperFdsAt-1])
	}
	for i := keeperFdsAt; i < keeperFdsAt+8; i++ {
		if keeperCode[i] != 0 {
			t.Errorf("pollfds' address byte %d is %#x before patching", i, keeperCode[i])
		}
	}
	if end := keeperCodeOff + len(keeperCode); end > ptrace.ArgOff {
		t.Errorf("keeper code ends at %#x, past the argument area at %#x", end, ptrace.ArgOff)
	}
}
