package sig_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/sig"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// si_code values (include/uapi/asm-generic/siginfo.h).
const (
	siUSER  = 0
	siQUEUE = -1
	siTKILL = -6
)

// siginfo fields of the kill/sigqueue layout, x86_64.
type siFields struct {
	signo, code int
	pid, uid    int
	value       int32 // sival_int
}

func fields(si image.SigInfo) siFields {
	le := binary.LittleEndian
	return siFields{
		signo: sig.Signo(si),
		code:  sig.Code(si),
		pid:   int(int32(le.Uint32(si[16:]))),
		uid:   int(le.Uint32(si[20:])),
		value: int32(le.Uint32(si[24:])),
	}
}

func showInfos(infos []image.SigInfo) string {
	var parts []string
	for _, si := range infos {
		if len(si) != image.SigInfoSize {
			parts = append(parts, fmt.Sprintf("<%d bytes>", len(si)))
			continue
		}
		f := fields(si)
		parts = append(parts, fmt.Sprintf("{sig=%d code=%d pid=%d uid=%d value=%d}", f.signo, f.code, f.pid, f.uid, f.value))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestPendingRoundTrip dumps the pending signals of testdata/pending.c
// (process queue: SIGUSR1 from kill(), SIGRTMIN+1 queued twice with values
// 42 and 43; the extra thread's queue: SIGUSR2 from tgkill()), re-queues
// them in a stub (the stub has one thread: the extra thread's signals go to
// its queue) and dumps the stub: every siginfo must come back byte for
// byte, si_pid still the original sender (the target), not the stub.
func TestPendingRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "pending", false), "ready ")
	var extra int
	if _, err := fmt.Sscanf(readOut(t, tg.Out), "ready %d", &extra); err != nil {
		t.Fatalf("parse the extra thread's tid: %v", err)
	}

	var shared, sharedViaExtra, leader, other []image.SigInfo
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, tids []int) {
		if len(tids) != 2 || tids[0] != tg.Pid || tids[1] != extra {
			t.Errorf("target threads %v, want [%d %d]", tids, tg.Pid, extra)
			return
		}
		var err error
		if shared, err = sig.DumpPending(tg.Pid, true); err != nil {
			t.Errorf("dump process queue: %v", err)
			return
		}
		if sharedViaExtra, err = sig.DumpPending(extra, true); err != nil {
			t.Errorf("dump process queue through thread %d: %v", extra, err)
			return
		}
		if leader, err = sig.DumpPending(tg.Pid, false); err != nil {
			t.Errorf("dump leader queue: %v", err)
			return
		}
		if other, err = sig.DumpPending(extra, false); err != nil {
			t.Errorf("dump thread %d queue: %v", extra, err)
		}
	})
	if t.Failed() {
		return
	}
	uid := os.Getuid()
	rtmin := 34 // glibc's SIGRTMIN
	checkQueue(t, "process queue", shared, []siFields{
		{int(unix.SIGUSR1), siUSER, tg.Pid, uid, 0},
		{rtmin + 1, siQUEUE, tg.Pid, uid, 42},
		{rtmin + 1, siQUEUE, tg.Pid, uid, 43},
	})
	if !equalInfos(sharedViaExtra, shared) {
		t.Errorf("process queue read through thread %d: %s, through the leader: %s", extra, showInfos(sharedViaExtra), showInfos(shared))
	}
	checkQueue(t, "leader queue", leader, nil)
	checkQueue(t, "extra thread queue", other, []siFields{{int(unix.SIGUSR2), siTKILL, tg.Pid, uid, 0}})
	if t.Failed() {
		return
	}

	var before, beforeThread, gotShared, gotThread []image.SigInfo
	var wrongThread error
	testutil.InStub(t, func(r *ptrace.Remote) {
		var err error
		if before, err = sig.DumpPending(r.Pid, true); err != nil {
			t.Errorf("dump empty stub: %v", err)
			return
		}
		if beforeThread, err = sig.DumpPending(r.Tid, false); err != nil {
			t.Errorf("dump empty stub: %v", err)
			return
		}
		wrongThread = sig.RestorePending(r.Injector, r, r.Tid+1, other, false)
		if err := sig.RestorePending(r.Injector, r, r.Tid, shared, true); err != nil {
			t.Errorf("restore process queue: %v", err)
			return
		}
		if err := sig.RestorePending(r.Injector, r, r.Tid, other, false); err != nil {
			t.Errorf("restore thread queue: %v", err)
			return
		}
		if gotShared, err = sig.DumpPending(r.Pid, true); err != nil {
			t.Errorf("dump stub process queue: %v", err)
			return
		}
		if gotThread, err = sig.DumpPending(r.Tid, false); err != nil {
			t.Errorf("dump stub thread queue: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if len(before) != 0 || len(beforeThread) != 0 {
		t.Errorf("empty stub has pending signals %s (process) %s (thread), want none", showInfos(before), showInfos(beforeThread))
	}
	if wrongThread == nil {
		t.Errorf("restoring thread %d's queue through another thread did not fail", extra)
	}
	if !equalInfos(gotShared, shared) {
		t.Errorf("process queue after the round trip:\n got %s\nwant %s", showInfos(gotShared), showInfos(shared))
	}
	if !equalInfos(gotThread, other) {
		t.Errorf("thread queue after the round trip:\n got %s\nwant %s", showInfos(gotThread), showInfos(other))
	}
}

func readOut(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkQueue(t *testing.T, name string, got []image.SigInfo, want []siFields) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = len(got[i]) == image.SigInfoSize && fields(got[i]) == want[i]
	}
	if !ok {
		t.Errorf("%s: %s, want %+v", name, showInfos(got), want)
	}
}

// equalInfos compares all 128 bytes of every siginfo.
func equalInfos(a, b []image.SigInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestPendingManyInOrder queues more signals than one PTRACE_PEEKSIGINFO
// batch reads, into both queues of a stub, and expects them all back in
// order.
func TestPendingManyInOrder(t *testing.T) {
	testutil.RequireRoot(t)
	const n = 75
	var pid int
	mk := func(i int) image.SigInfo {
		si := make(image.SigInfo, image.SigInfoSize)
		le := binary.LittleEndian
		le.PutUint32(si[0:], uint32(35+i%3))
		code := int32(siQUEUE)
		le.PutUint32(si[8:], uint32(code))
		le.PutUint32(si[16:], uint32(pid))
		le.PutUint32(si[24:], uint32(1000+i))
		return si
	}
	var want, got, gotThread []image.SigInfo
	testutil.InStub(t, func(r *ptrace.Remote) {
		pid = r.Pid
		for i := 0; i < n; i++ {
			want = append(want, mk(i))
		}
		if err := sig.RestorePending(r.Injector, r, r.Tid, want, true); err != nil {
			t.Errorf("restore process queue: %v", err)
			return
		}
		if err := sig.RestorePending(r.Injector, r, r.Tid, want, false); err != nil {
			t.Errorf("restore thread queue: %v", err)
			return
		}
		var err error
		if got, err = sig.DumpPending(r.Pid, true); err != nil {
			t.Errorf("dump process queue: %v", err)
			return
		}
		if gotThread, err = sig.DumpPending(r.Tid, false); err != nil {
			t.Errorf("dump thread queue: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if !equalInfos(got, want) {
		t.Errorf("process queue:\n got %s\nwant %s", showInfos(got), showInfos(want))
	}
	if !equalInfos(gotThread, want) {
		t.Errorf("thread queue:\n got %s\nwant %s", showInfos(gotThread), showInfos(want))
	}
}

// TestPendingSenderRule checks the kernel rule RestorePending relies on:
// a siginfo with si_code >= 0 (SI_USER) or SI_TKILL may only be queued by
// the target thread itself (the leader for the process queue), while
// SI_QUEUE may come from any thread; and RestorePending refuses a thread
// that may not queue.
func TestPendingSenderRule(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "pending", false), "ready ")
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, tids []int) {
		if len(tids) != 2 {
			t.Errorf("target threads %v, want 2", tids)
			return
		}
		extra := tids[1]
		in, err := ptrace.NewInjector(extra, r.SyscallAddr)
		if err != nil {
			t.Errorf("injector on %d: %v", extra, err)
			return
		}
		defer in.Restore()
		put := func(code int32) uint64 {
			si := make([]byte, image.SigInfoSize)
			binary.LittleEndian.PutUint32(si[0:], uint32(unix.SIGUSR1))
			binary.LittleEndian.PutUint32(si[8:], uint32(code))
			binary.LittleEndian.PutUint32(si[16:], uint32(tg.Pid))
			addr, err := r.Put(ptrace.ArgOff, si)
			if err != nil {
				t.Errorf("put siginfo: %v", err)
			}
			return addr
		}
		for _, c := range []struct {
			name string
			code int32
			nr   uint64
			args func(addr uint64) []uint64
			want error
		}{
			{"SI_USER to the process from a non-leader", siUSER, unix.SYS_RT_SIGQUEUEINFO,
				func(a uint64) []uint64 { return []uint64{uint64(tg.Pid), uint64(unix.SIGUSR1), a} }, unix.EPERM},
			{"SI_TKILL to the leader from another thread", siTKILL, unix.SYS_RT_TGSIGQUEUEINFO,
				func(a uint64) []uint64 { return []uint64{uint64(tg.Pid), uint64(tg.Pid), uint64(unix.SIGUSR1), a} }, unix.EPERM},
			{"SI_USER to itself", siUSER, unix.SYS_RT_TGSIGQUEUEINFO,
				func(a uint64) []uint64 { return []uint64{uint64(tg.Pid), uint64(extra), uint64(unix.SIGUSR1), a} }, nil},
			{"SI_QUEUE to the process from a non-leader", siQUEUE, unix.SYS_RT_SIGQUEUEINFO,
				func(a uint64) []uint64 { return []uint64{uint64(tg.Pid), uint64(unix.SIGUSR1), a} }, nil},
		} {
			_, err := in.Syscall(c.nr, c.args(put(c.code))...)
			if err != c.want {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
		shared, err := sig.DumpPending(tg.Pid, true)
		if err != nil {
			t.Errorf("dump: %v", err)
			return
		}
		if err := sig.RestorePending(in, r, 0, shared, true); err == nil {
			t.Errorf("RestorePending of the process queue through thread %d did not fail", extra)
		}
	})
}
