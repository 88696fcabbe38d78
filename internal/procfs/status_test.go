package procfs

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseStatusRecorded(t *testing.T) {
	st, err := ParseStatus(bytes.NewReader(readTestdata(t, "status.txt")))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Name: "a b) c", Umask: 0o22, State: 'R', Tgid: 3317, Pid: 3317, PPid: 3274, NSpid: []int{3317},
		Threads: 1, SigIgn: 0x1001000, SigCgt: 0x2, Groups: []int{},
		CapPrm: 0x1fffeffffff, CapEff: 0x1fffeffffff, CapBnd: 0x1fffeffffff,
		SpecStoreBypass: "vulnerable", SpecIndirectBranch: "always enabled", UntagMask: "0xffffffffffffffff"}
	if !reflect.DeepEqual(*st, want) {
		t.Errorf("got %+v\nwant %+v", *st, want)
	}
}

// statusSample is a hand-written status of a thread with non-trivial values.
const statusSample = "Name:\tweird name \n" +
	"Umask:\t0077\n" +
	"State:\tS (sleeping)\n" +
	"Tgid:\t100\n" +
	"Pid:\t101\n" +
	"PPid:\t1\n" +
	"Uid:\t1000\t1001\t1002\t4294967295\n" +
	"Gid:\t10\t20\t30\t40\n" +
	"Groups:\t4 24 27 \n" +
	"Threads:\t3\n" +
	"SigPnd:\t0000000000000100\n" +
	"ShdPnd:\t8000000000000000\n" +
	"SigBlk:\tfffffffe7ffbfeff\n" +
	"SigIgn:\t0000000000001000\n" +
	"SigCgt:\t0000000180004a07\n" +
	"CapInh:\t0000000000000001\n" +
	"CapPrm:\t0000000000000002\n" +
	"CapEff:\t0000000000000004\n" +
	"CapBnd:\t000001ffffffffff\n" +
	"CapAmb:\t0000000000000008\n" +
	"NoNewPrivs:\t1\n" +
	"Seccomp:\t2\n" +
	"Cpus_allowed_list:\t0-1\n"

func TestParseStatusSample(t *testing.T) {
	st, err := ParseStatus(strings.NewReader(statusSample))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Name: "weird name ", Umask: 0o77, State: 'S', Tgid: 100, Pid: 101, PPid: 1,
		Threads: 3, SigPnd: 0x100, ShdPnd: 1 << 63, SigBlk: 0xfffffffe7ffbfeff, SigIgn: 0x1000,
		SigCgt: 0x180004a07, NoNewPrivs: true, Seccomp: 2, Uid: [4]int{1000, 1001, 1002, 4294967295},
		Gid: [4]int{10, 20, 30, 40}, Groups: []int{4, 24, 27},
		CapInh: 1, CapPrm: 2, CapEff: 4, CapBnd: 0x1ffffffffff, CapAmb: 8}
	if !reflect.DeepEqual(*st, want) {
		t.Errorf("got %+v\nwant %+v", *st, want)
	}
}

func TestParseStatusMalformed(t *testing.T) {
	tests := []struct{ name, in, errPart string }{
		{"empty", "", "no Pid"},
		{"no pid", "Name:\tx\nTgid:\t1\n", "no Pid"},
		{"no colon", "Name:\tx\nPid\t1\n", "line 2"},
		{"truncated line", "Pid:\t1\nSigB", "line 2"},
		{"bad pid", "Pid:\tx1\n", "Pid"},
		{"bad umask", "Pid:\t1\nUmask:\t0089\n", "Umask"},
		{"bad sig hex", "Pid:\t1\nSigBlk:\t00000000000000zz\n", "SigBlk"},
		{"sig overflow", "Pid:\t1\nSigCgt:\t10000000000000000\n", "SigCgt"},
		{"bad cap", "Pid:\t1\nCapEff:\t-1\n", "CapEff"},
		{"short uid", "Pid:\t1\nUid:\t0\t0\t0\n", "Uid"},
		{"bad gid", "Pid:\t1\nGid:\t0\t0\tx\t0\n", "Gid"},
		{"bad groups", "Pid:\t1\nGroups:\t1 two\n", "Groups"},
		{"bad nnp", "Pid:\t1\nNoNewPrivs:\t2\n", "NoNewPrivs"},
		{"empty state", "Pid:\t1\nState:\t\n", "State"},
		{"bad threads", "Pid:\t1\nThreads:\t\n", "Threads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ParseStatus(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("no error, got %+v", st)
			}
			if !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("error %q does not mention %q", err, tt.errPart)
			}
		})
	}
}

// TestReadTaskSeccompMatchesStatus: the Seccomp line read alone is the
// full parse's, for this process's threads, and a file without the line
// gives 0.
func TestReadTaskSeccompMatchesStatus(t *testing.T) {
	pid := os.Getpid()
	tids, err := ListTasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		st, err := ReadTaskStatus(pid, tid)
		if err != nil {
			continue // exited meanwhile
		}
		mode, err := ReadTaskSeccomp(pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		if mode != st.Seccomp {
			t.Errorf("thread %d: Seccomp %d alone, %d in the full parse", tid, mode, st.Seccomp)
		}
	}
	for _, c := range []struct {
		in   string
		want int
	}{{"Name:\tx\nSeccomp:\t2\nNoNewPrivs:\t1\n", 2}, {"Name:\tx\n", 0}, {"Name:\tx\nSeccomp:\t1", 1}} {
		if got, err := parseSeccompLine([]byte(c.in), "status"); err != nil || got != c.want {
			t.Errorf("parseSeccompLine(%q) = %d, %v, want %d", c.in, got, err, c.want)
		}
	}
}
