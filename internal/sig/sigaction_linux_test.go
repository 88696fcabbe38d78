package sig_test

import (
	"fmt"
	"os/signal"
	"reflect"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/sig"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRoundTrip dumps the signal actions of testdata/procstate.c (handlers
// with SA_RESTART|SA_SIGINFO and masks, SA_ONSTACK|SA_NODEFER,
// SA_RESETHAND, a real-time signal, SIGPIPE ignored, SIGCHLD default with
// SA_NOCLDSTOP), restores them into a stub, dumps the stub and expects
// exactly the same actions.
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "procstate", false)
	tg := testutil.StartTarget(t, bin, "ready\n", ".")

	var want []image.Sigaction
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
		var err error
		if want, err = sig.Dump(r); err != nil {
			t.Errorf("dump target: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	checkTarget(t, want)

	var got, before []image.Sigaction
	testutil.InStub(t, func(r *ptrace.Remote) {
		var err error
		if before, err = sig.Dump(r); err != nil {
			t.Errorf("dump empty stub: %v", err)
			return
		}
		if err := sig.Restore(r, want); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		if got, err = sig.Dump(r); err != nil {
			t.Errorf("dump stub: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after the round trip (the stub had %s before the restore):\n got %s\nwant %s",
			show(before), show(got), show(want))
	}
}

// checkTarget makes sure the dump saw what procstate.c sets up, so that
// the round trip compares something.
func checkTarget(t *testing.T, sas []image.Sigaction) {
	t.Helper()
	by := map[int]image.Sigaction{}
	for _, sa := range sas {
		by[sa.Signal] = sa
	}
	const rtmin = 34 // glibc's SIGRTMIN: 32 and 33 are its own
	bit := func(s int) uint64 { return 1 << (s - 1) }
	for _, c := range []struct {
		sig         int
		flags, mask uint64
		ignored     bool
	}{
		{int(unix.SIGUSR1), saRESTART | saSIGINFO, bit(int(unix.SIGUSR2)) | bit(int(unix.SIGTERM)) | bit(rtmin+1), false},
		{int(unix.SIGUSR2), saONSTACK | saNODEFER, 0, false},
		{int(unix.SIGHUP), saRESETHAND, 0, false},
		{rtmin + 5, saRESTART | saSIGINFO, 0, false},
		// glibc's signal() has BSD semantics: SA_RESTART, the signal
		// itself masked.
		{int(unix.SIGPIPE), saRESTART, bit(int(unix.SIGPIPE)), true},
		{int(unix.SIGCHLD), saNOCLDSTOP, 0, false},
	} {
		sa, ok := by[c.sig]
		switch {
		case !ok:
			t.Errorf("signal %d: no action dumped; dump: %s", c.sig, show(sas))
		case sa.Flags&c.flags != c.flags:
			t.Errorf("signal %d: flags %#x lack %#x", c.sig, sa.Flags, c.flags)
		case sa.Mask != c.mask:
			t.Errorf("signal %d: mask %#x, want %#x", c.sig, sa.Mask, c.mask)
		case c.ignored && sa.Handler != 1: // SIG_IGN
			t.Errorf("signal %d: handler %#x, want SIG_IGN", c.sig, sa.Handler)
		case !c.ignored && c.sig != int(unix.SIGCHLD) && sa.Handler <= 1:
			t.Errorf("signal %d: handler %#x, want a function", c.sig, sa.Handler)
		}
	}
}

// sa_flags bits (include/uapi/asm-generic/signal-defs.h, x86).
const (
	saNOCLDSTOP = 0x00000001
	saSIGINFO   = 0x00000004
	saONSTACK   = 0x08000000
	saRESTART   = 0x10000000
	saNODEFER   = 0x40000000
	saRESETHAND = 0x80000000
)

func show(sas []image.Sigaction) string {
	s := "["
	for i, sa := range sas {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d:{h=%#x f=%#x r=%#x m=%#x}", sa.Signal, sa.Handler, sa.Flags, sa.Restorer, sa.Mask)
	}
	return s + "]"
}

// TestRestoreDefaultsInherited: a signal the image leaves at its default
// action must have the default action after a restore, even when rtcr
// itself ignores it (run under nohup, SIGHUP is ignored; started in the
// background by a non-interactive shell, SIGINT is), since an ignored
// action survives the exec that starts the stub.
func TestRestoreDefaultsInherited(t *testing.T) {
	testutil.RequireRoot(t)
	signal.Ignore(unix.SIGTERM)
	defer signal.Reset(unix.SIGTERM)
	var got []image.Sigaction
	testutil.InStub(t, func(r *ptrace.Remote) {
		// An image where every signal has its default action.
		if err := sig.Restore(r, nil); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		var err error
		if got, err = sig.Dump(r); err != nil {
			t.Errorf("dump stub: %v", err)
		}
	})
	if len(got) != 0 {
		t.Errorf("restored stub has non-default actions %s, want none", show(got))
	}
}
