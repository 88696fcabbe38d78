// Package cred holds a process's credentials, prctl state and seccomp
// state: dump and restore side by side.
//
// The credentials (user and group ids, supplementary groups, capability
// sets, securebits, no_new_privs) are per thread in the kernel; programs
// keep them equal across their threads (glibc's setuid family changes every
// thread), so the image holds one image.Creds per process, read from the
// thread-group leader, and Restore sets it thread by thread.
//
// Restore order on the restore side (see Restore and RestorePrctl):
//
//  1. every other restore step (they need the stub's root privileges);
//  2. for a process under seccomp, SuspendAll, then RestoreSeccomp (it
//     needs CAP_SYS_ADMIN; the filters apply only once rtcr detaches,
//     so the injected calls of the next steps are not filtered);
//  3. Restore for every thread, each through its own injector;
//  4. RestorePrctl in the main thread.
//
// Seccomp (seccomp_linux.go): each thread's mode; in filter mode the
// chain every thread has, each filter's classic BPF program and its
// SECCOMP_FILTER_FLAG_LOG flag. Saved and restored: strict mode per
// thread, one chain shared by all threads (TSYNC). Refused at dump: other
// layouts, and filters that may hand a call to a user-space listener.
// Not visible, so not restored: SECCOMP_FILTER_FLAG_SPEC_ALLOW (speculation
// mitigations the filter's installer opted out of).
//
// RestorePrctl must come after Restore: every credential change that
// changes the effective or filesystem uid or gid, or raises the permitted
// set, makes the kernel (commit_creds) reset the process's dumpable flag to
// /proc/sys/fs/suid_dumpable and clear the thread's parent-death signal.
// The prctl settings need no privilege, so they still work after Restore.
package cred

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Securebits flags (include/uapi/linux/securebits.h) used here.
const (
	secbitNoSetuidFixup = 1 << 2 // SECBIT_NO_SETUID_FIXUP
	secbitKeepCaps      = 1 << 4 // SECBIT_KEEP_CAPS, also PR_SET_KEEPCAPS
)

// prctl injects prctl(option, args...) through in.
func prctl(in *ptrace.Injector, option uint64, args ...uint64) (uint64, error) {
	return in.Syscall(unix.SYS_PRCTL, append([]uint64{option}, args...)...)
}

// getInt injects prctl(option, addr) for a GET option that stores an int
// at addr (a scratch slot of r) and returns that int.
func getInt(r *ptrace.Remote, option uint64) (int32, error) {
	var v int32
	addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&v))
	if err != nil {
		return 0, err
	}
	if _, err := prctl(r.Injector, option, addr); err != nil {
		return 0, err
	}
	if err := r.Get(ptrace.ArgOff, ptrace.Bytes(&v)); err != nil {
		return 0, err
	}
	return v, nil
}

// Dump reads the credentials and prctl state of the process of r: ids,
// groups, capability sets and no_new_privs from /proc/PID/status (the
// thread-group leader's), the securebits, dumpable flag, child-subreaper
// flag and parent-death signal with prctl GET calls injected in r's thread
// (they need no privilege, so Dump also works on a thread whose
// credentials Restore already lowered).
func Dump(r *ptrace.Remote) (*image.Creds, image.Prctl, error) {
	b := r.NewBatch()
	done, err := DumpBatch(r, b)
	if err != nil {
		return nil, image.Prctl{}, err
	}
	if err := r.RunBatch(r.Injector, b); err != nil {
		return nil, image.Prctl{}, err
	}
	return done()
}

// DumpBatch is Dump with its prctl calls queued in b; done returns the
// state once b ran.
func DumpBatch(r *ptrace.Remote, b *ptrace.Batch) (done func() (*image.Creds, image.Prctl, error), err error) {
	st, err := procfs.ReadStatus(r.Pid)
	if err != nil {
		return nil, fmt.Errorf("dump creds of %d: %w", r.Pid, err)
	}
	if err := attr.CheckSpeculation(r.Pid, r.Pid, st); err != nil {
		return nil, err
	}
	c := fromStatus(st)
	sb := b.Add(unix.SYS_PRCTL, unix.PR_GET_SECUREBITS)
	d := b.Add(unix.SYS_PRCTL, unix.PR_GET_DUMPABLE)
	srAddr, srOff := b.Out(4)
	sr := b.Add(unix.SYS_PRCTL, unix.PR_GET_CHILD_SUBREAPER, srAddr)
	sigAddr, sigOff := b.Out(4)
	sig := b.Add(unix.SYS_PRCTL, unix.PR_GET_PDEATHSIG, sigAddr)
	return func() (*image.Creds, image.Prctl, error) {
		var p image.Prctl
		v, err := b.Result(sb)
		if err != nil {
			return nil, p, fmt.Errorf("dump creds of %d: prctl(PR_GET_SECUREBITS) in tid %d: %w", r.Pid, r.Tid, err)
		}
		c.Securebits = uint32(v)
		if v, err = b.Result(d); err != nil {
			return nil, p, fmt.Errorf("dump prctl state of %d: prctl(PR_GET_DUMPABLE): %w", r.Pid, err)
		}
		p.Dumpable = int(v)
		if _, err = b.Result(sr); err != nil {
			return nil, p, fmt.Errorf("dump prctl state of %d: prctl(PR_GET_CHILD_SUBREAPER): %w", r.Pid, err)
		}
		p.ChildSubreaper = int32(binary.LittleEndian.Uint32(b.Bytes(srOff, 4))) != 0
		if _, err = b.Result(sig); err != nil {
			return nil, p, fmt.Errorf("dump prctl state of %d: prctl(PR_GET_PDEATHSIG) in tid %d: %w", r.Pid, r.Tid, err)
		}
		p.PdeathSig = int(int32(binary.LittleEndian.Uint32(b.Bytes(sigOff, 4))))
		return c, p, nil
	}, nil
}

// fromStatus converts the credential fields of a status file. An empty
// group list becomes nil.
func fromStatus(st *procfs.Status) *image.Creds {
	c := &image.Creds{
		Uid: uint32(st.Uid[0]), Euid: uint32(st.Uid[1]), Suid: uint32(st.Uid[2]), Fsuid: uint32(st.Uid[3]),
		Gid: uint32(st.Gid[0]), Egid: uint32(st.Gid[1]), Sgid: uint32(st.Gid[2]), Fsgid: uint32(st.Gid[3]),
		CapInh: st.CapInh, CapPrm: st.CapPrm, CapEff: st.CapEff,
		CapBnd: st.CapBnd, CapAmb: st.CapAmb,
		NoNewPrivs: st.NoNewPrivs,
	}
	for _, g := range st.Groups {
		c.Groups = append(c.Groups, uint32(g))
	}
	return c
}

// RestorePrctl sets the dumpable flag, the child-subreaper flag and the
// parent-death signal of p in the main thread of the stub r. None needs a
// privilege. Call it after Restore (see the package comment): a credential
// change resets the dumpable flag and clears the parent-death signal.
//
// The parent-death signal is per thread in the kernel (and fires when the
// thread that created the process ends); the image holds the main
// thread's, which is where programs set it, and only the main thread gets
// it back. The dumpable value 2 (SUID_DUMP_ROOT, from suid_dumpable) cannot
// be set with prctl: it is accepted only if the stub already has it.
func RestorePrctl(r *ptrace.Remote, p image.Prctl) error {
	cur, err := prctl(r.Injector, unix.PR_GET_DUMPABLE)
	if err != nil {
		return fmt.Errorf("restore prctl state of %d: prctl(PR_GET_DUMPABLE): %w", r.Pid, err)
	}
	if int(cur) != p.Dumpable {
		if p.Dumpable != 0 && p.Dumpable != 1 {
			return fmt.Errorf("restore prctl state of %d: dumpable %d (the stub has %d): prctl can only set 0 or 1: %w",
				r.Pid, p.Dumpable, cur, unix.EINVAL)
		}
		if _, err := prctl(r.Injector, unix.PR_SET_DUMPABLE, uint64(p.Dumpable)); err != nil {
			return fmt.Errorf("restore prctl state of %d: prctl(PR_SET_DUMPABLE, %d): %w", r.Pid, p.Dumpable, err)
		}
	}
	var sr uint64
	if p.ChildSubreaper {
		sr = 1
	}
	if _, err := prctl(r.Injector, unix.PR_SET_CHILD_SUBREAPER, sr); err != nil {
		return fmt.Errorf("restore prctl state of %d: prctl(PR_SET_CHILD_SUBREAPER, %d): %w", r.Pid, sr, err)
	}
	if p.PdeathSig < 0 || p.PdeathSig > 64 {
		return fmt.Errorf("restore prctl state of %d: parent-death signal %d out of range: %w", r.Pid, p.PdeathSig, unix.EINVAL)
	}
	if _, err := prctl(r.Injector, unix.PR_SET_PDEATHSIG, uint64(p.PdeathSig)); err != nil {
		return fmt.Errorf("restore prctl state of %d: prctl(PR_SET_PDEATHSIG, %d) in tid %d: %w", r.Pid, p.PdeathSig, r.Tid, err)
	}
	return nil
}

// errMismatch marks a Restore whose result differs from the image.
var errMismatch = errors.New("credentials differ from the image")
