package cred

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// thread is one thread whose credentials Restore sets.
type thread struct {
	in *ptrace.Injector
	r  *ptrace.Remote
}

// fail wraps err with the process, the thread and what failed.
func (t thread) fail(what string, err error) error {
	return fmt.Errorf("restore creds of %d, tid %d: %s: %w", t.r.Pid, t.in.Tid, what, err)
}

// call injects system call nr; what describes it, with its values.
func (t thread) call(what string, nr uint64, args ...uint64) (uint64, error) {
	v, err := t.in.Syscall(nr, args...)
	if err != nil {
		return 0, t.fail(what, err)
	}
	return v, nil
}

// prctl injects prctl(option, args...); what describes it.
func (t thread) prctl(what string, option uint64, args ...uint64) (uint64, error) {
	return t.call(what, unix.SYS_PRCTL, append([]uint64{option}, args...)...)
}

// setgroups sets the supplementary groups; the list goes to the scratch
// area's data part.
func (t thread) setgroups(groups []uint32) error {
	var buf []byte
	for _, g := range groups {
		buf = binary.LittleEndian.AppendUint32(buf, g)
	}
	var addr uint64
	if len(buf) > 0 {
		var err error
		if addr, err = t.r.Put(ptrace.DataOff, buf); err != nil {
			return t.fail(fmt.Sprintf("setgroups of %d groups", len(groups)), err)
		}
	}
	_, err := t.call(fmt.Sprintf("setgroups(%v)", groups), unix.SYS_SETGROUPS, uint64(len(groups)), addr)
	return err
}

// setfs sets a filesystem id with setfsuid or setfsgid (nr), which report
// no error, and checks the result: an invalid id (-1) changes nothing and
// returns the current one.
func (t thread) setfs(name string, nr uint64, id uint32) error {
	what := fmt.Sprintf("%s(%d)", name, id)
	if _, err := t.call(what, nr, uint64(id)); err != nil {
		return err
	}
	cur, err := t.call(name+"(-1)", nr, uint64(^uint32(0)))
	if err != nil {
		return err
	}
	if uint32(cur) != id {
		return t.fail(what, fmt.Errorf("the id stays %d: %w", uint32(cur), unix.EPERM))
	}
	return nil
}

// capset sets the thread's effective, permitted and inheritable sets
// (version 3 header, pid 0: the calling thread); what names the step.
func (t thread) capset(what string, eff, prm, inh uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(prm), Inheritable: uint32(inh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(prm >> 32), Inheritable: uint32(inh >> 32)},
	}
	what = fmt.Sprintf("capset %s (effective %#x, permitted %#x, inheritable %#x)", what, eff, prm, inh)
	h, err := t.r.Put(ptrace.ArgOff, ptrace.Bytes(&hdr))
	if err != nil {
		return t.fail(what, err)
	}
	d, err := t.r.Put(ptrace.ArgOff+16, ptrace.Bytes(&data))
	if err != nil {
		return t.fail(what, err)
	}
	_, err = t.call(what, unix.SYS_CAPSET, h, d)
	return err
}

// verify reads the thread's credentials back and compares them with c
// (groups as sets: the kernel keeps them sorted; securebits were set
// without a silent failure mode and are not read again).
func (t thread) verify(c *image.Creds) error {
	st, err := procfs.ReadTaskStatus(t.r.Pid, t.in.Tid)
	if err != nil {
		return t.fail("read status after the restore", err)
	}
	got, want := *fromStatus(st), *c
	got.Securebits = want.Securebits
	gg, wg := slices.Sorted(slices.Values(got.Groups)), slices.Sorted(slices.Values(want.Groups))
	got.Groups, want.Groups = nil, nil
	if !slices.Equal(gg, wg) || !reflect.DeepEqual(got, want) {
		got.Groups, want.Groups = gg, wg
		return t.fail("check", fmt.Errorf("%w: got %+v, want %+v", errMismatch, got, want))
	}
	return nil
}

// DumpThread returns the credentials of thread tid of pid when they
// differ from proc, the process's (its leader's), nil when they are the
// same; it refuses the thread if its status shows speculation control of
// its own (attr.CheckSpeculation). Securebits are not in /proc: the thread's are taken to be the
// leader's.
func DumpThread(pid, tid int, proc *image.Creds) (*image.Creds, error) {
	st, err := procfs.ReadTaskStatus(pid, tid)
	if err != nil {
		return nil, fmt.Errorf("dump creds of thread %d of %d: %w", tid, pid, err)
	}
	if err := attr.CheckSpeculation(pid, tid, st); err != nil {
		return nil, err
	}
	c := fromStatus(st)
	c.Securebits = proc.Securebits
	if reflect.DeepEqual(c, proc) || (slices.Equal(c.Groups, proc.Groups) && equalButGroups(c, proc)) {
		return nil, nil
	}
	return c, nil
}

// equalButGroups compares a and b without their groups.
func equalButGroups(a, b *image.Creds) bool {
	x, y := *a, *b
	x.Groups, y.Groups = nil, nil
	return reflect.DeepEqual(x, y)
}
