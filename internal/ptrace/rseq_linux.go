package ptrace

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Offsets in struct rseq and struct rseq_cs (include/uapi/linux/rseq.h).
const (
	rseqCSOff       = 8  // struct rseq: __u64 rseq_cs
	rseqCSSize      = 32 // version, flags, start_ip, post_commit_offset, abort_ip
	rseqCSStartOff  = 8
	rseqCSCommitOff = 16
	rseqCSAbortOff  = 24
)

// rseqAbort moves a thread stopped inside an rseq critical section to the
// section's abort handler, as the kernel does when it resumes a thread
// that was preempted there (every frozen thread was). rtcr must do it
// itself before it runs the thread anywhere else: the kernel would see the
// thread outside the section, forget the section, and the thread, put
// back inside it, would carry on as if never interrupted.
func rseqAbort(tid int, regs *unix.PtraceRegs) error {
	rs, err := GetRseq(tid)
	if err != nil || rs.RseqAbiPointer == 0 {
		return err
	}
	var word [8]byte
	if err := ReadMem(tid, rs.RseqAbiPointer+rseqCSOff, word[:]); err != nil {
		return fmt.Errorf("thread %d: read rseq_cs at %#x: %w", tid, rs.RseqAbiPointer+rseqCSOff, err)
	}
	csAddr := binary.LittleEndian.Uint64(word[:])
	if csAddr == 0 {
		return nil
	}
	var cs [rseqCSSize]byte
	if err := ReadMem(tid, csAddr, cs[:]); err != nil {
		return fmt.Errorf("thread %d: read rseq critical section at %#x: %w", tid, csAddr, err)
	}
	le := binary.LittleEndian
	start, commit, abort := le.Uint64(cs[rseqCSStartOff:]), le.Uint64(cs[rseqCSCommitOff:]), le.Uint64(cs[rseqCSAbortOff:])
	if regs.Rip < start || regs.Rip-start >= commit {
		return nil // not inside: the kernel clears a stale rseq_cs itself
	}
	// The kernel checks the signature before the abort handler and kills
	// the thread when it is wrong; rtcr leaves such a thread to it.
	var sig [4]byte
	if err := ReadMem(tid, abort-4, sig[:]); err != nil || le.Uint32(sig[:]) != rs.Signature {
		return nil
	}
	regs.Rip = abort
	return nil
}
