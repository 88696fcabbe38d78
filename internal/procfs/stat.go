package procfs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Stat holds the fields of /proc/PID/stat that rtcr uses. Field numbers in
// the comments are those of proc_pid_stat(5).
type Stat struct {
	Pid        int    // (1)
	Comm       string // (2) without the parentheses; may contain spaces and ')'
	State      byte   // (3) 'R', 'S', 'D', 'Z', 'T', 't', 'X', 'I' ...
	Ppid       int    // (4)
	Pgrp       int    // (5)
	Session    int    // (6)
	TtyNr      uint64 // (7) device number of the controlling terminal, 0 if none
	Tpgid      int    // (8) foreground process group of that terminal
	NumThreads int    // (20)
	StartTime  uint64 // (22) clock ticks after boot
	StartCode  uint64 // (26)
	EndCode    uint64 // (27)
	StartStack uint64 // (28)
	StartData  uint64 // (45)
	EndData    uint64 // (46)
	StartBrk   uint64 // (47)
	ArgStart   uint64 // (48)
	ArgEnd     uint64 // (49)
	EnvStart   uint64 // (50)
	EnvEnd     uint64 // (51)
	ExitCode   int    // (52) the wait status of an exited thread, 0 if absent
}

// statFields is the number of fields ParseStat requires (up to env_end).
const statFields = 51

// ParseStat parses the contents of a /proc/PID/stat file. The comm field is
// delimited by the first '(' and the last ')', since comm itself may contain
// spaces and parentheses.
func ParseStat(b []byte) (*Stat, error) {
	st, err := parseStat(b)
	if err != nil {
		return nil, fmt.Errorf("parse stat: %w", err)
	}
	return st, nil
}

// ReadStat reads and parses /proc/PID/stat.
func ReadStat(pid int) (*Stat, error) {
	path := procPath(pid, "stat")
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	st, err := parseStat(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return st, nil
}

func parseStat(b []byte) (*Stat, error) {
	s := strings.TrimSuffix(string(b), "\n")
	open := strings.IndexByte(s, '(')
	cl := strings.LastIndexByte(s, ')')
	if open < 0 || cl < open {
		return nil, errors.New("comm not in parentheses")
	}
	st := &Stat{Comm: s[open+1 : cl]}
	var err error
	if st.Pid, err = strconv.Atoi(strings.TrimSpace(s[:open])); err != nil {
		return nil, fmt.Errorf("field 1 (pid): %w", err)
	}
	f := strings.Fields(s[cl+1:])
	if len(f) < statFields-2 {
		return nil, fmt.Errorf("%d fields, want at least %d", len(f)+2, statFields)
	}
	if len(f[0]) != 1 {
		return nil, fmt.Errorf("field 3 (state): bad state %q", f[0])
	}
	st.State = f[0][0]
	p := statParser{f: f}
	st.Ppid = p.int(4)
	st.Pgrp = p.int(5)
	st.Session = p.int(6)
	st.TtyNr = p.uint(7)
	st.Tpgid = p.int(8)
	st.NumThreads = p.int(20)
	st.StartTime = p.uint(22)
	st.StartCode = p.uint(26)
	st.EndCode = p.uint(27)
	st.StartStack = p.uint(28)
	st.StartData = p.uint(45)
	st.EndData = p.uint(46)
	st.StartBrk = p.uint(47)
	st.ArgStart = p.uint(48)
	st.ArgEnd = p.uint(49)
	st.EnvStart = p.uint(50)
	st.EnvEnd = p.uint(51)
	if len(f) >= 52-2 {
		st.ExitCode = p.int(52)
	}
	if p.err != nil {
		return nil, p.err
	}
	return st, nil
}

// statParser converts fields after the comm, remembering the first error.
// f[0] is field 3.
type statParser struct {
	f   []string
	err error
}

func (p *statParser) int(n int) int {
	v, err := strconv.ParseInt(p.f[n-3], 10, 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("field %d: %w", n, err)
	}
	return int(v)
}

func (p *statParser) uint(n int) uint64 {
	v, err := strconv.ParseUint(p.f[n-3], 10, 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("field %d: %w", n, err)
	}
	return v
}
