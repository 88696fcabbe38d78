// Package attr holds the plain per-process attributes: working directory,
// umask, personality, resource limits, OOM score adjustment, the THP-disable
// prctl, and each thread's scheduling state — dump and restore side by side.
package attr

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// numRlimits is RLIM_NLIMITS on Linux.
const numRlimits = 16

// Dump fills the attributes of the stopped process r into p. Resource
// limits are read with prlimit from outside, or, when that is refused
// (prlimit of another process with other ids needs CAP_SYS_RESOURCE), from
// inside: every injected call is time the target stands frozen.
func Dump(r *ptrace.Remote, p *image.Process) error {
	b := r.NewBatch()
	done, err := DumpBatch(r, b, p)
	if err != nil {
		return err
	}
	if err := r.RunBatch(r.Injector, b); err != nil {
		return err
	}
	return done()
}

// DumpBatch is Dump with the calls it must make inside the process queued
// in b; once b ran, done completes p.
func DumpBatch(r *ptrace.Remote, b *ptrace.Batch, p *image.Process) (done func() error, err error) {
	pid := r.Pid
	if p.Cwd, err = procfs.ReadCwd(pid); err != nil {
		return nil, err
	}
	if p.Exe, err = procfs.ReadExe(pid); err != nil {
		return nil, err
	}
	if p.Personality, err = procfs.ReadPersonality(pid); err != nil {
		return nil, err
	}
	st, err := procfs.ReadStatus(pid)
	if err != nil {
		return nil, err
	}
	p.Umask, p.Comm = st.Umask, st.Name
	p.Rlimits = p.Rlimits[:0]
	for res := 0; res < numRlimits; res++ {
		var rl unix.Rlimit
		if err := unix.Prlimit(pid, res, nil, &rl); err == nil {
			p.Rlimits = append(p.Rlimits, image.Rlimit{Resource: res, Cur: rl.Cur, Max: rl.Max})
			continue
		}
		if _, err := r.Syscall(unix.SYS_PRLIMIT64, 0, uint64(res), 0, r.Scratch+ptrace.ArgOff); err != nil {
			return nil, fmt.Errorf("read rlimit %d of %d: %w", res, pid, err)
		}
		if err := r.Get(ptrace.ArgOff, ptrace.Bytes(&rl)); err != nil {
			return nil, err
		}
		p.Rlimits = append(p.Rlimits, image.Rlimit{Resource: res, Cur: rl.Cur, Max: rl.Max})
	}
	return dumpOomTHP(r, b, p)
}

// Restore sets the attributes of p in the stub r. Resource limits are
// set with prlimit from outside, or, when that is refused, from inside.
func Restore(r *ptrace.Remote, p *image.Process) error {
	if p.CwdDeleted == nil { // else files.ChdirDeleted, after the fds
		path, err := r.PutString(ptrace.ArgOff, p.Cwd)
		if err != nil {
			return err
		}
		if _, err := r.Syscall(unix.SYS_CHDIR, path); err != nil {
			return fmt.Errorf("restore cwd %s of %d: %w", p.Cwd, r.Pid, err)
		}
	}
	if _, err := r.Syscall(unix.SYS_UMASK, uint64(p.Umask)); err != nil {
		return fmt.Errorf("restore umask of %d: %w", r.Pid, err)
	}
	if _, err := r.Syscall(unix.SYS_PERSONALITY, p.Personality); err != nil {
		return fmt.Errorf("restore personality %#x of %d: %w", p.Personality, r.Pid, err)
	}
	for _, rl := range p.Rlimits {
		v := unix.Rlimit{Cur: rl.Cur, Max: rl.Max}
		// From outside when allowed, like the dump: every injected call
		// is two ptrace stops, and a tree has 16 limits per process.
		var cur unix.Rlimit
		if err := unix.Prlimit(r.Pid, rl.Resource, nil, &cur); err == nil && cur == v {
			continue
		}
		if err := unix.Prlimit(r.Pid, rl.Resource, &v, nil); err == nil {
			continue
		}
		addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&v))
		if err != nil {
			return err
		}
		if _, err := r.Syscall(unix.SYS_PRLIMIT64, 0, uint64(rl.Resource), addr, 0); err != nil {
			return fmt.Errorf("restore rlimit %d (cur %d, max %d) of %d: %w", rl.Resource, rl.Cur, rl.Max, r.Pid, err)
		}
	}
	return restoreOomTHP(r, p)
}

// CheckRlimits checks, before any process exists, that the stubs (which
// start with rtcr's own limits) can take p's resource limits: raising a
// hard limit needs CAP_SYS_RESOURCE, so without it every hard limit of p
// must be at most rtcr's. The same bound holds for an image of a
// non-root owner without CAP_SYS_RESOURCE when rtcr has it (root): the
// stub would raise the hard limits with root's rights, giving the
// owner's process limits (RLIMIT_RTPRIO, RLIMIT_NICE, RLIMIT_MEMLOCK …)
// its owner could not have set.
func CheckRlimits(p *image.Process, owner image.Owner) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("own capabilities: %w", err)
	}
	privileged := owner.Root || owner.Caps&(1<<unix.CAP_SYS_RESOURCE) != 0
	if data[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0 && privileged {
		return nil
	}
	for _, rl := range p.Rlimits {
		var own unix.Rlimit
		if err := unix.Prlimit(0, rl.Resource, nil, &own); err != nil {
			return fmt.Errorf("own rlimit %d: %w", rl.Resource, err)
		}
		if rl.Max > own.Max && !privileged {
			return fmt.Errorf("pid %d: rlimit %d: hard limit %d above rtcr's own %d, and the image's owner (uid %d) lacks CAP_SYS_RESOURCE to raise it: %w",
				p.Pid, rl.Resource, rl.Max, own.Max, owner.Uid, image.ErrUntrusted)
		}
		if rl.Max > own.Max {
			return fmt.Errorf("pid %d: rlimit %d: hard limit %d above rtcr's own %d, and rtcr lacks CAP_SYS_RESOURCE to raise it: %w",
				p.Pid, rl.Resource, rl.Max, own.Max, unix.EPERM)
		}
	}
	return nil
}

// CheckOomScoreAdj refuses, for an image of a non-root owner without
// CAP_SYS_RESOURCE, an OOM score adjustment of p below rtcr's own, which
// the stub starts with: rtcr writes it from outside with its own rights,
// and the kernel lets only CAP_SYS_RESOURCE go below the minimum the
// process inherited (a process its owner could not have made safe from
// the OOM killer would be).
func CheckOomScoreAdj(p *image.Process, owner image.Owner) error {
	if p.OomScoreAdj == nil || owner.Root || owner.Caps&(1<<unix.CAP_SYS_RESOURCE) != 0 {
		return nil
	}
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return fmt.Errorf("own oom_score_adj: %w", err)
	}
	own, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("own oom_score_adj %q: %w", data, err)
	}
	if *p.OomScoreAdj < own {
		return fmt.Errorf("pid %d: oom_score_adj %d below rtcr's own %d, and the image's owner (uid %d) lacks CAP_SYS_RESOURCE to lower it: %w",
			p.Pid, *p.OomScoreAdj, own, owner.Uid, image.ErrUntrusted)
	}
	return nil
}
