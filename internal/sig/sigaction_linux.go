// Package sig holds a process's signal dispositions: the sigaction of
// every signal, dumped and restored by injected rt_sigaction calls.
package sig

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// unchangeable reports signals whose action cannot be read or set.
func unchangeable(s int) bool { return s == int(unix.SIGKILL) || s == int(unix.SIGSTOP) }

// Dump reads the actions of the stopped process r that differ from the
// default and returns them. Only signals /proc says are caught or ignored
// are read (each read is an injected call), and SIGCHLD, whose default
// action may carry SA_NOCLDSTOP or SA_NOCLDWAIT.
func Dump(r *ptrace.Remote) ([]image.Sigaction, error) {
	b := r.NewBatch()
	done, err := DumpBatch(r, b)
	if err != nil {
		return nil, err
	}
	if err := r.RunBatch(r.Injector, b); err != nil {
		return nil, err
	}
	return done()
}

// DumpBatch is Dump with its calls queued in b; done returns the actions
// once b ran.
func DumpBatch(r *ptrace.Remote, b *ptrace.Batch) (done func() ([]image.Sigaction, error), err error) {
	st, err := procfs.ReadStatus(r.Pid)
	if err != nil {
		return nil, err
	}
	return dumpSet(r, b, st.SigCgt|st.SigIgn|bit(int(unix.SIGCHLD))), nil
}

// bit is the mask bit of signal s.
func bit(s int) uint64 { return 1 << (s - 1) }

func dumpSet(r *ptrace.Remote, b *ptrace.Batch, set uint64) func() ([]image.Sigaction, error) {
	type read struct{ sig, call, off int }
	var reads []read
	for s := 1; s <= abi.MaxSignal; s++ {
		if unchangeable(s) || set&bit(s) == 0 {
			continue
		}
		var ka abi.KernelSigaction
		addr, off := b.Out(len(ptrace.Bytes(&ka)))
		reads = append(reads, read{s, b.Add(unix.SYS_RT_SIGACTION, uint64(s), 0, addr, abi.SigsetSize), off})
	}
	return func() ([]image.Sigaction, error) {
		var out []image.Sigaction
		for _, rd := range reads {
			if _, err := b.Result(rd.call); err != nil {
				return nil, fmt.Errorf("read sigaction %d of %d: %w", rd.sig, r.Pid, err)
			}
			var ka abi.KernelSigaction
			copy(ptrace.Bytes(&ka), b.Bytes(rd.off, len(ptrace.Bytes(&ka))))
			if ka == (abi.KernelSigaction{}) {
				continue
			}
			out = append(out, image.Sigaction{Signal: rd.sig, Handler: ka.Handler, Flags: ka.Flags, Restorer: ka.Restorer, Mask: ka.Mask})
		}
		return out, nil
	}
}

// Restore installs the image's signal actions in the stub r. Every other
// signal is set to its default action: the stub inherits rtcr's ignored
// signals across exec (SIGHUP under nohup, SIGINT in a background job),
// which the checkpointed process did not have.
func Restore(r *ptrace.Remote, sas []image.Sigaction) error {
	st, err := procfs.ReadStatus(r.Pid)
	if err != nil {
		return err
	}
	set := st.SigCgt | st.SigIgn // the stub's non-default actions
	want := map[int]image.Sigaction{}
	for _, sa := range sas {
		want[sa.Signal] = sa
		set |= bit(sa.Signal)
	}
	for s := 1; s <= abi.MaxSignal; s++ {
		if unchangeable(s) || set&bit(s) == 0 {
			continue
		}
		sa := want[s]
		ka := abi.KernelSigaction{Handler: sa.Handler, Flags: sa.Flags, Restorer: sa.Restorer, Mask: sa.Mask}
		addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&ka))
		if err != nil {
			return err
		}
		if _, err := r.Syscall(unix.SYS_RT_SIGACTION, uint64(s), addr, 0, abi.SigsetSize); err != nil {
			return fmt.Errorf("restore sigaction %d (handler %#x) of %d: %w", s, sa.Handler, r.Pid, err)
		}
	}
	return nil
}
