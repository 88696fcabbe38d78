package run

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// Options says what to run and how.
type Options struct {
	// Args is the program and its arguments; Args[0] is looked up in PATH.
	Args []string
	// Every asks for a checkpoint of the running tree every Every (the
	// tree keeps running); zero means none.
	Every time.Duration
	// Checkpoint checkpoints the tree rooted at pid, leaving it running,
	// and says where it went and how long the tree was frozen, for the
	// log (package rtcr's Dump into a checkpoint series; passed in to
	// keep this package below it).
	Checkpoint func(pid int) (string, error)
	// Log receives one line per periodic checkpoint; nil for none.
	Log func(format string, args ...any)
}

// forwarded are the signals `rtcr run` passes on to the program.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT}

// Run starts opts.Args below rtcr's init in new pid and time namespaces,
// with rtcr's stdio and environment, forwards signals to it, takes the
// periodic checkpoints asked for, and returns the exit status `rtcr run`
// should exit with: the program's, or 128+signal if it was killed.
func Run(opts Options) (int, error) {
	if len(opts.Args) == 0 {
		return 0, errors.New("run: no program given")
	}
	path, err := exec.LookPath(opts.Args[0])
	if err != nil {
		return 0, fmt.Errorf("run: %w", err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return 0, fmt.Errorf("run: %w", err)
	}
	initPath, err := InstallInit()
	if err != nil {
		return 0, fmt.Errorf("run: %w", err)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	proc, err := os.StartProcess(initPath, append([]string{"rtcr-init", path}, opts.Args...), &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		// The init is pid 1 of a new pid namespace; it unshares a time
		// namespace before exec, which exec then enters.
		Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Unshareflags: unix.CLONE_NEWTIME},
	})
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", path, err)
	}
	initPid := proc.Pid
	_ = proc.Release()
	exited, err := watchExit(initPid)
	if err != nil {
		_ = unix.Kill(initPid, unix.SIGKILL)
		return 0, err
	}
	var tick <-chan time.Time
	if opts.Every > 0 && opts.Checkpoint != nil {
		t := time.NewTicker(opts.Every)
		defer t.Stop()
		tick = t.C
	}
	for n := 1; ; {
		select {
		case <-exited:
			return reap(initPid)
		case s := <-sigs:
			if fromTerminal(s) {
				continue // the terminal sent it to the program too
			}
			if pid, ok := program(initPid); ok {
				_ = unix.Kill(pid, s.(syscall.Signal))
			}
		case <-tick:
			start := time.Now()
			where, err := opts.Checkpoint(initPid)
			if err != nil && exitedWithin(exited, time.Second) {
				// The program ended while it was being checkpointed:
				// nothing failed, there is nothing left to save.
				if opts.Log != nil {
					opts.Log("checkpoint %d not taken: the program exited meanwhile (%v)", n, err)
				}
				return reap(initPid)
			}
			if opts.Log != nil {
				if err != nil {
					opts.Log("checkpoint %d failed: %v", n, err)
				} else {
					opts.Log("checkpoint %d into %s in %v", n, where, time.Since(start).Round(time.Millisecond))
				}
			}
			n++
		}
	}
}

// exitedWithin reports whether exited is closed within d.
func exitedWithin(exited <-chan struct{}, d time.Duration) bool {
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

// watchExit reports on the returned channel when pid has exited, through
// a pidfd: nothing calls wait4 before, so a checkpoint's tracer sees every
// ptrace stop of the init.
func watchExit(pid int) (<-chan struct{}, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("run: pidfd of init %d: %w", pid, err)
	}
	ch := make(chan struct{})
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || err != unix.EINTR {
				break
			}
		}
		close(ch)
	}()
	return ch, nil
}

// reap collects the init and turns its wait status into an exit status.
func reap(pid int) (int, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("run: wait for init %d: %w", pid, err)
		}
		break
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// program returns the pid (as rtcr sees it) of the init's first child,
// which is pid 2 inside the namespace.
func program(initPid int) (int, bool) {
	m, err := tree.ChildMap()
	if err != nil {
		return 0, false
	}
	for _, c := range m[initPid] {
		if st, err := procfs.ReadStatus(c); err == nil && len(st.NSpid) > 0 && st.NSpid[len(st.NSpid)-1] == 2 {
			return c, true
		}
	}
	return 0, false
}

// fromTerminal reports whether s is a terminal's signal (Ctrl-C, Ctrl-\)
// that the kernel already delivered to the program: rtcr's stdin is a
// terminal whose foreground process group is rtcr's, which the program
// shares.
func fromTerminal(s os.Signal) bool {
	if s != syscall.SIGINT && s != syscall.SIGQUIT {
		return false
	}
	fg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && fg == unix.Getpgrp()
}
