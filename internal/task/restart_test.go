package task

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestAdjustRestart(t *testing.T) {
	neg := func(n int64) uint64 { return uint64(-n) }
	tests := []struct {
		name             string
		in               unix.PtraceRegs
		wantRax, wantRip uint64
		restarted        bool
	}{
		{"not in syscall", unix.PtraceRegs{Orig_rax: noSyscall, Rax: 5, Rip: 0x1000}, 5, 0x1000, false},
		{"syscall finished", unix.PtraceRegs{Orig_rax: 0, Rax: 3, Rip: 0x1000}, 3, 0x1000, false},
		{"failed with EINTR", unix.PtraceRegs{Orig_rax: 0, Rax: neg(4), Rip: 0x1000}, neg(4), 0x1000, false},
		{"read ERESTARTSYS", unix.PtraceRegs{Orig_rax: 0, Rax: neg(512), Rip: 0x1002}, 0, 0x1000, true},
		{"ERESTARTNOINTR", unix.PtraceRegs{Orig_rax: 61, Rax: neg(513), Rip: 0x2002}, 61, 0x2000, true},
		{"ERESTARTNOHAND", unix.PtraceRegs{Orig_rax: 34, Rax: neg(514), Rip: 0x2002}, 34, 0x2000, true},
		{"nanosleep ERESTART_RESTARTBLOCK", unix.PtraceRegs{Orig_rax: 35, Rax: neg(516), Rip: 0x3002}, 35, 0x3000, true},
		{"unknown code 515", unix.PtraceRegs{Orig_rax: 35, Rax: neg(515), Rip: 0x3002}, neg(515), 0x3002, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.in
			desc := AdjustRestart(&r)
			if r.Rax != tc.wantRax || r.Rip != tc.wantRip {
				t.Errorf("rax=%#x rip=%#x, want rax=%#x rip=%#x", r.Rax, r.Rip, tc.wantRax, tc.wantRip)
			}
			if r.Orig_rax != noSyscall {
				t.Errorf("orig_rax = %#x, want -1", r.Orig_rax)
			}
			if (desc != "") != tc.restarted {
				t.Errorf("description %q, restarted want %v", desc, tc.restarted)
			}
		})
	}
}
