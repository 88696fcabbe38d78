package image

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// System holds the limits of the restoring kernel an image must fit.
type System struct {
	// PidMax is /proc/sys/kernel/pid_max: pids and tids are below it.
	PidMax int
	// NrOpen is /proc/sys/fs/nr_open: fd numbers are below it.
	NrOpen int
	// MmapMinAddr is /proc/sys/vm/mmap_min_addr: no mapping starts below.
	MmapMinAddr uint64
}

// ReadSystem reads the limits of the running kernel.
func ReadSystem() (System, error) {
	var s System
	for _, f := range []struct {
		path string
		dst  *uint64
	}{
		{"/proc/sys/kernel/pid_max", nil},
		{"/proc/sys/fs/nr_open", nil},
		{"/proc/sys/vm/mmap_min_addr", &s.MmapMinAddr},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return s, err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 63)
		if err != nil {
			return s, fmt.Errorf("%s: %w", f.path, err)
		}
		switch {
		case f.dst != nil:
			*f.dst = n
		case strings.HasSuffix(f.path, "pid_max"):
			s.PidMax = int(n)
		default:
			s.NrOpen = int(n)
		}
	}
	return s, nil
}

// CheckRestore checks, before any process is created, what Validate
// cannot know: the restoring kernel's limits sys, and that the image asks
// for no more than its owner had. Every live process must have
// credentials. Unless the owner is root, every uid of every process must
// be the owner's, every gid and supplementary group one of the owner's
// groups, and the permitted, effective, inheritable and ambient
// capabilities within the owner's. Errors wrap ErrUntrusted (credentials)
// or ErrCorrupt (limits) and name the pid and field.
func (c *Checkpoint) CheckRestore(sys System, owner Owner) error {
	for i := range c.Processes {
		p := &c.Processes[i]
		if err := checkSystem(p, sys); err != nil {
			return corruptf("pid %d: %w", p.Pid, err)
		}
		if p.Zombie {
			continue
		}
		if p.Creds == nil {
			return fmt.Errorf("pid %d: no credentials: %w", p.Pid, ErrUntrusted)
		}
		if err := checkCreds(p.Creds, owner); err != nil {
			return fmt.Errorf("pid %d: %w: %w", p.Pid, err, ErrUntrusted)
		}
		for _, th := range p.Threads {
			// The real-time I/O class needs CAP_SYS_ADMIN or CAP_SYS_NICE,
			// which a non-root owner's process could not have used.
			if !owner.Root && th.IOPrio>>13 == 1 {
				return fmt.Errorf("pid %d, thread %d: real-time I/O priority %#x: %w", p.Pid, th.Tid, th.IOPrio, ErrUntrusted)
			}
			if err := checkSched(th.Sched, owner); err != nil {
				return fmt.Errorf("pid %d, thread %d: %w: %w", p.Pid, th.Tid, err, ErrUntrusted)
			}
			if th.Creds == nil {
				continue
			}
			if err := checkCreds(th.Creds, owner); err != nil {
				return fmt.Errorf("pid %d, thread %d: %w: %w", p.Pid, th.Tid, err, ErrUntrusted)
			}
		}
		if l := p.LoginUID; l != nil && !owner.Root && *l != owner.Uid && *l != math.MaxUint32 {
			return fmt.Errorf("pid %d: audit login uid %d, neither unset nor the image owner's %d: %w", p.Pid, *l, owner.Uid, ErrUntrusted)
		}
		if err := checkInet(p, owner); err != nil {
			return fmt.Errorf("pid %d: %w: %w", p.Pid, err, ErrUntrusted)
		}
		if err := checkFanotify(p, owner); err != nil {
			return fmt.Errorf("pid %d: %w: %w", p.Pid, err, ErrUntrusted)
		}
	}
	// A segment rtcr creates gets the image's owner and creator: the
	// image's owner must be both (restore also checks that a segment it
	// reuses is the owner's).
	for _, s := range c.SysVShm {
		if !owner.Root && (s.UID != owner.Uid || s.CUID != owner.Uid || !slices.Contains(owner.Gids, s.GID) || !slices.Contains(owner.Gids, s.CGID)) {
			return fmt.Errorf("SysV shm id %d: owner %d:%d, creator %d:%d, not the image's owner %d or its groups: %w", s.ID, s.UID, s.GID, s.CUID, s.CGID, owner.Uid, ErrUntrusted)
		}
	}
	return nil
}

// capSysNice is CAP_SYS_NICE (linux/capability.h).
const capSysNice = 23

// checkSched refuses, unless owner is root or has CAP_SYS_NICE, a
// thread's real-time or deadline policy or a negative nice value: rtcr
// sets them from outside with its own (root's) rights, which the kernel
// does not check against the thread's limits, so the owner's process
// would get a priority only a privileged process could give it.
func checkSched(s *Sched, owner Owner) error {
	if s == nil || owner.Root || owner.Caps&(1<<capSysNice) != 0 {
		return nil
	}
	switch s.Policy {
	case 1, 2, 6: // SCHED_FIFO, SCHED_RR, SCHED_DEADLINE
		return fmt.Errorf("scheduling policy %d (real-time or deadline) without CAP_SYS_NICE (uid %d)", s.Policy, owner.Uid)
	}
	if s.Nice < 0 {
		return fmt.Errorf("nice %d (below 0) without CAP_SYS_NICE (uid %d)", s.Nice, owner.Uid)
	}
	return nil
}

// checkSystem checks one process against the kernel's limits.
func checkSystem(p *Process, sys System) error {
	if p.Pid >= sys.PidMax {
		return fmt.Errorf("pid %d is not below pid_max %d", p.Pid, sys.PidMax)
	}
	for _, t := range p.Threads {
		if t.Tid >= sys.PidMax {
			return fmt.Errorf("tid %d is not below pid_max %d", t.Tid, sys.PidMax)
		}
	}
	for _, fd := range p.FDs {
		if fd.Num >= sys.NrOpen {
			return fmt.Errorf("fd %d is not below nr_open %d", fd.Num, sys.NrOpen)
		}
	}
	for _, v := range p.VMAs {
		if v.Kind != KindVsyscall && v.Start < sys.MmapMinAddr {
			return fmt.Errorf("vma %#x-%#x starts below mmap_min_addr %#x", v.Start, v.End, sys.MmapMinAddr)
		}
	}
	return nil
}

// checkCreds checks credentials against what owner had.
func checkCreds(c *Creds, owner Owner) error {
	if owner.Root {
		return nil
	}
	who := "the image owner"
	if owner.Restorer {
		who = "the restoring user"
	}
	for _, u := range []struct {
		name string
		id   uint32
	}{{"uid", c.Uid}, {"euid", c.Euid}, {"suid", c.Suid}, {"fsuid", c.Fsuid}} {
		if u.id != owner.Uid {
			return fmt.Errorf("credentials: %s %d is not %s's uid %d", u.name, u.id, who, owner.Uid)
		}
	}
	gids := []struct {
		name string
		id   uint32
	}{{"gid", c.Gid}, {"egid", c.Egid}, {"sgid", c.Sgid}, {"fsgid", c.Fsgid}}
	for _, g := range c.Groups {
		gids = append(gids, struct {
			name string
			id   uint32
		}{"supplementary group", g})
	}
	for _, g := range gids {
		if !slices.Contains(owner.Gids, g.id) {
			return fmt.Errorf("credentials: %s %d is not a group of %s (uid %d)", g.name, g.id, who, owner.Uid)
		}
	}
	for _, s := range []struct {
		name string
		set  uint64
	}{{"permitted", c.CapPrm}, {"effective", c.CapEff}, {"inheritable", c.CapInh}, {"ambient", c.CapAmb}} {
		if extra := s.set &^ owner.Caps; extra != 0 {
			return fmt.Errorf("credentials: %s capabilities %#x beyond %s's (uid %d: %#x)", s.name, extra, who, owner.Uid, owner.Caps)
		}
	}
	return nil
}
