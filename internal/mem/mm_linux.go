package mem

import (
	"encoding/binary"
	"fmt"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// DumpMM reads the mm fields of the stopped process r: code/data/brk/stack
// boundaries and the arg/env areas from /proc/PID/stat, the current brk by
// an injected brk(0), and the auxiliary vector.
func DumpMM(r *ptrace.Remote) (image.MM, error) {
	b := r.NewBatch()
	done, err := DumpMMBatch(r, b)
	if err != nil {
		return image.MM{}, err
	}
	if err := r.RunBatch(r.Injector, b); err != nil {
		return image.MM{}, err
	}
	return done()
}

// DumpMMBatch is DumpMM with its brk(0) queued in b; done returns the mm
// fields once b ran.
func DumpMMBatch(r *ptrace.Remote, b *ptrace.Batch) (done func() (image.MM, error), err error) {
	st, err := procfs.ReadStat(r.Pid)
	if err != nil {
		return nil, err
	}
	auxv, err := procfs.ReadAuxv(r.Pid)
	if err != nil {
		return nil, err
	}
	call := b.Add(unix.SYS_BRK, 0)
	return func() (image.MM, error) {
		brk, err := b.Result(call)
		if err != nil {
			return image.MM{}, fmt.Errorf("read brk of %d: %w", r.Pid, err)
		}
		return image.MM{
			StartCode: st.StartCode, EndCode: st.EndCode,
			StartData: st.StartData, EndData: st.EndData,
			StartBrk: st.StartBrk, Brk: brk,
			StartStack: st.StartStack,
			ArgStart:   st.ArgStart, ArgEnd: st.ArgEnd,
			EnvStart: st.EnvStart, EnvEnd: st.EnvEnd,
			Auxv: auxv,
		}, nil
	}, nil
}

// RestoreMM sets the mm fields and the exe link of the stub with one
// PR_SET_MM_MAP (single PR_SET_MM_* fields would need CAP_SYS_RESOURCE).
// It must run after the stub's own executable is unmapped. The executable
// is opened with open.
func RestoreMM(r *ptrace.Remote, p *image.Process, open OpenFunc) error {
	exeFd, err := open(p.Exe, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("restore exe link of %d: %w", r.Pid, err)
	}
	defer r.Close(exeFd)
	var auxv []byte
	for _, w := range p.MM.Auxv {
		auxv = binary.LittleEndian.AppendUint64(auxv, w)
	}
	auxvAddr, err := r.Put(ptrace.DataOff, auxv)
	if err != nil {
		return err
	}
	mm := p.MM
	m := abi.PrctlMMMap{
		StartCode: mm.StartCode, EndCode: mm.EndCode,
		StartData: mm.StartData, EndData: mm.EndData,
		StartBrk: mm.StartBrk, Brk: mm.Brk,
		StartStack: mm.StartStack,
		ArgStart:   mm.ArgStart, ArgEnd: mm.ArgEnd,
		EnvStart: mm.EnvStart, EnvEnd: mm.EnvEnd,
		Auxv: auxvAddr, AuxvSize: uint32(len(auxv)),
		ExeFd: uint32(exeFd),
	}
	mAddr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&m))
	if err != nil {
		return err
	}
	if _, err := r.Syscall(unix.SYS_PRCTL, abi.PR_SET_MM, abi.PR_SET_MM_MAP, mAddr, uint64(len(ptrace.Bytes(&m))), 0); err != nil {
		return fmt.Errorf("restore mm of %d (PR_SET_MM_MAP, exe %s): %w", r.Pid, p.Exe, err)
	}
	return nil
}
