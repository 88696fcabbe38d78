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
	st, err := procfs.ReadStatus(r.Pid)
	if err != nil {
		return nil, err
	}
	return dumpSet(r, st.SigCgt|st.SigIgn|bit(int(unix.SIGCHLD)))
}

// bit is the mask bit of signal s.
func bit(s int) uint64 { return 1 << (s - 1) }

func dumpSet(r *ptrace.Remote, set uint64) ([]image.Sigaction, error) {
	var out []image.Sigaction
	for s := 1; s <= abi.MaxSignal; s++ {
		if unchangeable(s) || set&bit(s) == 0 {
			continue
		}
		if _, err := r.Syscall(unix.SYS_RT_SIGACTION, uint64(s), 0, r.Scratch+ptrace.ArgOff, abi.SigsetSize); err != nil {
			return nil, fmt.Errorf("read sigaction %d of %d: %w", s, r.Pid, err)
		}
		var ka abi.KernelSigaction
		if err := r.Get(ptrace.ArgOff, ptrace.Bytes(&ka)); err != nil {
			return nil, err
		}
		if ka == (abi.KernelSigaction{}) {
			continue
		}
		out = append(out, image.Sigaction{Signal: s, Handler: ka.Handler, Flags: ka.Flags, Restorer: ka.Restorer, Mask: ka.Mask})
	}
	return out, nil
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
