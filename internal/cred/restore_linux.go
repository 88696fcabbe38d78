package cred

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Restore sets the credentials c on one thread of a stub that runs as root
// with the capabilities c needs: in is that thread's injector, r the remote
// of its process, whose scratch area holds the structure arguments (the
// threads share the address space). Raw system calls change only the
// calling thread, so the restore calls Restore for every thread, as that
// thread's last injected step: afterwards the thread may lack the
// privilege for anything else. RestorePrctl comes after it.
//
// The order, and why (capabilities(7), credentials(7)):
//
//  1. setgroups, setresgid, setfsgid: need CAP_SETGID, done while the
//     thread is still root. setresgid sets the fsgid to the egid, so
//     setfsgid follows it. setfsgid reports no error: the result is
//     checked by reading it back.
//  2. prctl(PR_SET_KEEPCAPS, 1) when setresuid leaves root, then
//     setresuid: leaving root clears the permitted set without keep-caps;
//     with it, only the effective set is cleared (euid 0 → non-0).
//  3. capset of a working set: effective = permitted = the permitted set
//     the thread still has, inheritable = c's. The effective set comes
//     back, which the next steps need (CAP_SETUID, CAP_SETPCAP), and the
//     inheritable set is set before the bounding set shrinks: capset
//     cannot add inheritable bits outside the bounding set, and an image
//     may have such bits (set before their bounding bit was dropped).
//  4. setfsuid (setresuid set the fsuid to the euid): needs CAP_SETUID
//     unless the fsuid is one of the uids; checked by reading it back.
//  5. PR_CAPBSET_DROP of each bit the stub has and c lacks: CAP_SETPCAP.
//  6. PR_CAP_AMBIENT_CLEAR_ALL, then PR_CAP_AMBIENT_RAISE of each bit of
//     c.CapAmb: the bit must be permitted and inheritable (it is, in the
//     working set), and SECBIT_NO_CAP_AMBIENT_RAISE must not be set yet.
//  7. securebits: PR_SET_KEEPCAPS back to c's keep-caps bit (no privilege
//     needed), then PR_SET_SECUREBITS only if the rest still differs
//     (CAP_SETPCAP). After the ambient raise and the uid changes, so that
//     c's locks and SECBIT_NO_CAP_AMBIENT_RAISE do not get in their way.
//  8. capset of c's sets: may drop CAP_SETPCAP and every other capability,
//     so it comes after everything that needs one. It can only lower the
//     permitted set; the ambient set keeps the bits still permitted and
//     inheritable, all of c's.
//  9. PR_SET_NO_NEW_PRIVS if c has it (it cannot be unset).
//
// Finally Restore reads the thread's credentials back and reports an error
// if they differ from c.
func Restore(in *ptrace.Injector, r *ptrace.Remote, c *image.Creds) error {
	t := thread{in: in, r: r}
	st, err := procfs.ReadTaskStatus(r.Pid, in.Tid)
	if err != nil {
		return t.fail("read status", err)
	}
	if extra := c.CapBnd &^ st.CapBnd; extra != 0 {
		return t.fail(fmt.Sprintf("bounding set %#x", c.CapBnd),
			fmt.Errorf("the stub's bounding set %#x lacks %#x: %w", st.CapBnd, extra, unix.EPERM))
	}
	if st.NoNewPrivs && !c.NoNewPrivs {
		return t.fail("no_new_privs 0", fmt.Errorf("the stub has no_new_privs set, it cannot be unset: %w", unix.EPERM))
	}
	sb, err := t.prctl("prctl(PR_GET_SECUREBITS)", unix.PR_GET_SECUREBITS)
	if err != nil {
		return err
	}
	if same(st, sb, c) {
		// The stub's thread has c already (a root image restored by
		// root): nothing to change, and no call to make.
		return nil
	}

	// 1. Groups (left alone when they are already c's: setgroups needs
	// CAP_SETGID even then, which a restore without root lacks).
	if !sameGroups(st.Groups, c.Groups) {
		if err := t.setgroups(c.Groups); err != nil {
			return err
		}
	}
	if _, err := t.call(fmt.Sprintf("setresgid(%d, %d, %d)", c.Gid, c.Egid, c.Sgid),
		unix.SYS_SETRESGID, uint64(c.Gid), uint64(c.Egid), uint64(c.Sgid)); err != nil {
		return err
	}
	if err := t.setfs("setfsgid", unix.SYS_SETFSGID, c.Fsgid); err != nil {
		return err
	}
	// 2. Users, keeping the permitted set.
	old := [3]uint32{uint32(st.Uid[0]), uint32(st.Uid[1]), uint32(st.Uid[2])}
	if dropsRoot(old, [3]uint32{c.Uid, c.Euid, c.Suid}) && sb&(secbitKeepCaps|secbitNoSetuidFixup) == 0 {
		if _, err := t.prctl("prctl(PR_SET_KEEPCAPS, 1)", unix.PR_SET_KEEPCAPS, 1); err != nil {
			return err
		}
	}
	if _, err := t.call(fmt.Sprintf("setresuid(%d, %d, %d)", c.Uid, c.Euid, c.Suid),
		unix.SYS_SETRESUID, uint64(c.Uid), uint64(c.Euid), uint64(c.Suid)); err != nil {
		return err
	}
	// 3. The working capability set.
	mid, err := procfs.ReadTaskStatus(r.Pid, in.Tid)
	if err != nil {
		return t.fail("read status after setresuid", err)
	}
	if err := t.capset("working set", mid.CapPrm, mid.CapPrm, c.CapInh); err != nil {
		return err
	}
	// 4. Filesystem uid.
	if err := t.setfs("setfsuid", unix.SYS_SETFSUID, c.Fsuid); err != nil {
		return err
	}
	// 5. Bounding set.
	for _, n := range capBits(st.CapBnd &^ c.CapBnd) {
		if _, err := t.prctl(fmt.Sprintf("prctl(PR_CAPBSET_DROP, %d)", n), unix.PR_CAPBSET_DROP, uint64(n)); err != nil {
			return err
		}
	}
	// 6. Ambient set.
	if _, err := t.prctl("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL); err != nil {
		return err
	}
	for _, n := range capBits(c.CapAmb) {
		if _, err := t.prctl(fmt.Sprintf("prctl(PR_CAP_AMBIENT_RAISE, %d)", n),
			unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uint64(n)); err != nil {
			return err
		}
	}
	// 7. Securebits.
	if sb, err = t.prctl("prctl(PR_GET_SECUREBITS)", unix.PR_GET_SECUREBITS); err != nil {
		return err
	}
	if want := uint64(c.Securebits) & secbitKeepCaps; sb&secbitKeepCaps != want {
		if _, err := t.prctl(fmt.Sprintf("prctl(PR_SET_KEEPCAPS, %d)", want>>4), unix.PR_SET_KEEPCAPS, want>>4); err != nil {
			return err
		}
		sb ^= secbitKeepCaps
	}
	if uint32(sb) != c.Securebits {
		if _, err := t.prctl(fmt.Sprintf("prctl(PR_SET_SECUREBITS, %#x) (stub has %#x)", c.Securebits, sb),
			unix.PR_SET_SECUREBITS, uint64(c.Securebits)); err != nil {
			return err
		}
	}
	// 8. The image's capability sets.
	if err := t.capset("image sets", c.CapEff, c.CapPrm, c.CapInh); err != nil {
		return err
	}
	// 9. no_new_privs.
	if c.NoNewPrivs && !st.NoNewPrivs {
		if _, err := t.prctl("prctl(PR_SET_NO_NEW_PRIVS, 1)", unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
			return err
		}
	}
	return t.verify(c)
}

// same reports whether a thread with status st and securebits sb has
// exactly the credentials c, groups in the same order.
func same(st *procfs.Status, sb uint64, c *image.Creds) bool {
	got, want := *fromStatus(st), *c
	got.Securebits = uint32(sb)
	if !slices.Equal(got.Groups, want.Groups) {
		return false
	}
	got.Groups, want.Groups = nil, nil
	return reflect.DeepEqual(got, want)
}

// sameGroups reports whether the groups a thread has (from /proc) are
// exactly want, in order.
func sameGroups(have []int, want []uint32) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if uint32(have[i]) != want[i] {
			return false
		}
	}
	return true
}
