// Command zdtm runs the static tests of an already built CRIU zdtm tree through rtcr, one at a
// time, the way CRIU's zdtm.py runs them in its host flavour: start the test with the command
// line its Makefile gives (make -n NAME.pid), wait for its pid file, note its fds and mappings,
// `rtcr dump` (which kills it), `rtcr restore`, compare fds and mappings, SIGTERM it, wait for it
// to exit and read PASS or FAIL from its output file.
//
// It is a measuring tool, not a test: nothing in CI runs it. See docs/peer-tests.md.
//
//	go run ./tools/zdtm -zdtm /tmp/criu/test/zdtm -rtcr ./rtcr pipe00 env00 …
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	zdtm := flag.String("zdtm", "", "path of a built zdtm tree (the directory holding lib/ and static/)")
	rtcr := flag.String("rtcr", "rtcr", "rtcr binary")
	work := flag.String("work", "/tmp/rtcr-zdtm-work", "directory for images and logs (one subdirectory per test)")
	list := flag.String("list", "", "file naming one test per line (# comments); the arguments name more")
	flag.Parse()
	if *zdtm == "" {
		fmt.Fprintln(os.Stderr, "zdtm: -zdtm DIR is required")
		os.Exit(2)
	}
	names := flag.Args()
	if *list != "" {
		more, err := readList(*list)
		if err != nil {
			fmt.Fprintln(os.Stderr, "zdtm:", err)
			os.Exit(2)
		}
		names = append(names, more...)
	}
	bin, err := filepath.Abs(*rtcr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "zdtm:", err)
		os.Exit(2)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "zdtm: PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(1)
	}
	// Fds this program inherited (a CI runner's, a shell's) would reach the tests: zdtm starts
	// them with only 0-2.
	closeInherited()
	r := &runner{static: filepath.Join(*zdtm, "static"), rtcr: bin, work: *work}
	go r.reap()
	pass := 0
	fmt.Println("| test | result | step | reason |")
	fmt.Println("|---|---|---|---|")
	for _, name := range names {
		res := r.run(name)
		if res.result == "PASS" {
			pass++
		}
		fmt.Printf("| %s | %s | %s | %s |\n", name, res.result, res.step, strings.ReplaceAll(res.reason, "|", "\\|"))
	}
	fmt.Printf("\n%d of %d passed\n", pass, len(names))
}

// readList reads test names from path, one per line; blank lines and # comments are skipped.
func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("test list: %w", err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			names = append(names, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("test list %s: %w", path, err)
	}
	return names, nil
}

// desc is what the harness uses of a test's NAME.desc (a Python dict literal).
type desc struct {
	flags  string // 'flags': suid, noauto, crfail, excl, …
	flavor string // 'flavor': h, ns, uns (empty: all)
	opts   string // 'opts': CRIU options the test needs
	arch   string // 'arch': the only architecture it runs on
}

var descField = regexp.MustCompile(`'(flags|flavor|opts|arch|feature)'\s*:\s*'([^']*)'`)

// readDesc parses static/NAME.desc; a test without one has an empty desc.
func readDesc(static, name string) desc {
	var d desc
	b, err := os.ReadFile(filepath.Join(static, name+".desc"))
	if err != nil {
		return d
	}
	for _, m := range descField.FindAllStringSubmatch(string(b), -1) {
		switch m[1] {
		case "flags":
			d.flags = m[2]
		case "flavor":
			d.flavor = m[2]
		case "opts":
			d.opts = m[2]
		case "arch":
			d.arch = m[2]
		}
	}
	return d
}

func hasWord(list, w string) bool {
	for _, f := range strings.Fields(list) {
		if f == w {
			return true
		}
	}
	return false
}

// waitGone waits until pid no longer exists (the reaper reaps it) or d passes.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// closeInherited marks every fd above 2 close-on-exec.
func closeInherited() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
