package image

import (
	"errors"
	"strings"
	"testing"
)

// TestValidateAttrs: the per-thread and per-process attributes of an
// image are values the kernel takes before anything is restored from them;
// an image without them (older) is valid.
func TestValidateAttrs(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	tests := []struct {
		name   string
		mutate func(p *Process, th *Thread)
		msg    string
	}{
		{"none", func(p *Process, th *Thread) {}, ""},
		{"all valid", func(p *Process, th *Thread) {
			th.Affinity, th.IOPrio, th.TimerSlack = []uint64{2}, 2<<13|6, 123456
			th.MemPolicy = &MemPolicy{Mode: 2 | 1<<15, Nodes: []uint64{1}}
			p.CoredumpFilter, p.KSMMergeAny, p.LoginUID, p.MDWE = u32(0x33), true, u32(1000), 3
			early := 1
			th.TSCSigsegv, th.MCEKill = true, &early
			p.Cgroups = []Cgroup{{ID: 0, Path: "/a/b"}, {ID: 4, Controllers: "cpu,cpuacct", Path: "/"}}
		}, ""},
		{"empty affinity", func(p *Process, th *Thread) { th.Affinity = []uint64{0} }, "without a CPU"},
		{"huge affinity", func(p *Process, th *Thread) { th.Affinity = make([]uint64, 129) }, "CPU affinity of 129 words"},
		{"ioprio class", func(p *Process, th *Thread) { th.IOPrio = 4 << 13 }, "I/O priority"},
		{"ioprio level", func(p *Process, th *Thread) { th.IOPrio = 2<<13 | 8<<3 | 9 }, "I/O priority"},
		{"mempolicy mode", func(p *Process, th *Thread) { th.MemPolicy = &MemPolicy{Mode: 7} }, "memory policy mode"},
		{"mce kill", func(p *Process, th *Thread) { v := 2; th.MCEKill = &v }, "machine-check"},
		{"mdwe", func(p *Process, th *Thread) { p.MDWE = 2 }, "memory-deny-write-execute"},
		{"coredump_filter", func(p *Process, th *Thread) { p.CoredumpFilter = u32(1 << 9) }, "coredump_filter"},
		{"cgroup ..", func(p *Process, th *Thread) { p.Cgroups = []Cgroup{{Path: "/a/../../etc"}} }, "cgroup"},
		{"cgroup relative", func(p *Process, th *Thread) { p.Cgroups = []Cgroup{{Path: "a"}} }, "cgroup"},
		{"cgroup controllers", func(p *Process, th *Thread) { p.Cgroups = []Cgroup{{ID: 1, Controllers: "a/b", Path: "/"}} }, "cgroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleCheckpoint()
			p := &c.Processes[0]
			tt.mutate(p, &p.Threads[0])
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Validate() = %v, want ErrCorrupt naming %q", err, tt.msg)
			}
		})
	}
}

// TestCheckRestoreAttrs: an image of a non-root user may not ask for a
// thread with more than its owner has, nor the real-time I/O class, nor a
// real-time scheduling policy or negative nice without CAP_SYS_NICE, nor a
// login uid but its owner's or none.
func TestCheckRestoreAttrs(t *testing.T) {
	owner := Owner{Uid: 1000, Gids: []uint32{1000}}
	c := sampleCheckpoint()
	p := &c.Processes[0]
	p.Creds = &Creds{}
	p.Creds.Uid, p.Creds.Euid, p.Creds.Suid, p.Creds.Fsuid = 1000, 1000, 1000, 1000
	p.Creds.Gid, p.Creds.Egid, p.Creds.Sgid, p.Creds.Fsgid = 1000, 1000, 1000, 1000
	p.Creds.Groups, p.Creds.CapPrm, p.Creds.CapEff, p.Creds.CapInh, p.Creds.CapAmb = nil, 0, 0, 0, 0
	if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, owner); err != nil {
		t.Skipf("the sample image is not one uid 1000 may restore: %v", err)
	}
	root := *p.Creds
	root.Euid = 0
	p.Threads[0].Creds = &root
	if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, owner); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "thread") {
		t.Fatalf("thread with euid 0: %v, want ErrUntrusted naming the thread", err)
	}
	p.Threads[0].Creds = nil
	p.Threads[0].IOPrio = 1<<13 | 4
	if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, owner); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "real-time I/O") {
		t.Fatalf("real-time I/O class: %v, want ErrUntrusted", err)
	}
	p.Threads[0].IOPrio = 2<<13 | 4
	for _, s := range []Sched{{Policy: 1, Priority: 50}, {Policy: 2, Priority: 1}, {Policy: 6, Runtime: 1e6, Deadline: 1e7, Period: 1e7}, {Nice: -5}} {
		p.Threads[0].Sched = &s
		if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, owner); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "CAP_SYS_NICE") {
			t.Fatalf("sched %+v: %v, want ErrUntrusted naming CAP_SYS_NICE", s, err)
		}
		nice := owner
		nice.Caps = 1 << capSysNice
		if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, nice); err != nil {
			t.Fatalf("sched %+v with CAP_SYS_NICE: %v", s, err)
		}
	}
	p.Threads[0].Sched = &Sched{Policy: 3, Nice: 5}
	if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, owner); err != nil {
		t.Fatalf("SCHED_BATCH nice 5: %v", err)
	}
	l := uint32(0)
	p.LoginUID = &l
	if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, owner); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "login uid") {
		t.Fatalf("login uid 0: %v, want ErrUntrusted", err)
	}
	l = 1000
	if err := c.CheckRestore(System{PidMax: 1 << 22, NrOpen: 1 << 20}, owner); err != nil {
		t.Fatalf("login uid of the owner: %v", err)
	}
}
