package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr"
	runner "github.com/rtcr/rtcr/internal/run"
	"github.com/rtcr/rtcr/internal/series"
)

// exitStatus makes rtcr exit with a given status (that of the program
// `rtcr run` ran), printing nothing.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func runRun(args []string) error {
	fs := newFlags("run", "[--dir DIR --every 30s [--keep 3] [--no-incremental] [--max-freeze 5ms] [--log-file PATH] [-v0…-v4]] -- CMD [ARGS…]")
	var o runner.Options
	var dir string
	fs.StringVar(&dir, "dir", "", "directory of the periodic checkpoints DIR/1, DIR/2 … and DIR/latest (with --every)")
	fs.StringVar(&dir, "D", "", "short for --dir")
	fs.DurationVar(&o.Every, "every", 0, "checkpoint the running tree into --dir this often (e.g. 30s)")
	keep := fs.Int("keep", 3, "periodic checkpoints kept, the newest (0: all); an older one is merged into its child, then removed")
	full := fs.Bool("no-incremental", false, "make every periodic checkpoint a full image (by default the first is full and tracks writes, the next ones hold only the pages written since)")
	maxFreeze := fs.Duration("max-freeze", 0, "freeze budget of each incremental checkpoint: pages written since the last one are copied while the program runs (pre-copy rounds) until the rest fits (e.g. 5ms)")
	var lf logFlags
	lf.add(fs)
	args = criuArgs(fs, args)
	if err := fs.Parse(args); err != nil {
		return parse(fs, args) // prints help, or turns the error into a usage error
	}
	o.Args = fs.Args()
	if len(o.Args) == 0 {
		return usagef("no program given (rtcr run [options] -- CMD [ARGS…])")
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["every"] && o.Every <= 0 {
		return usagef("--every must be > 0")
	}
	if (o.Every > 0) != (dir != "") {
		return usagef("--every and --dir go together")
	}
	if *keep < 0 {
		return usagef("--keep must be >= 0")
	}
	if (given["keep"] || given["no-incremental"] || given["max-freeze"]) && o.Every == 0 {
		return usagef("--keep, --no-incremental and --max-freeze go with --every")
	}
	if given["max-freeze"] && *maxFreeze <= 0 {
		return usagef("--max-freeze must be > 0")
	}
	if given["max-freeze"] && *full {
		return usagef("--max-freeze needs incremental checkpoints (not --no-incremental)")
	}
	log, closeLog, err := lf.open()
	if err != nil {
		return err
	}
	defer closeLog()
	var cp *rtcr.Checkpointer
	if o.Every > 0 {
		copts := rtcr.CheckpointerOptions{Dir: dir, Keep: *keep, Full: *full, MaxFreeze: *maxFreeze, Logger: log}
		// The series directory is checked now; the Checkpointer is made
		// once the tree's pid is known.
		if _, err := series.Open(dir, *keep); err != nil {
			return err
		}
		o.Checkpoint = func(pid int) (string, error) {
			if cp == nil {
				var err error
				if cp, err = rtcr.NewCheckpointer(pid, copts); err != nil {
					return "", err
				}
			}
			st, err := cp.Checkpoint(context.Background())
			if err != nil {
				return "", lf.failed(log, err)
			}
			return checkpointLine(st), nil
		}
	}
	o.Log = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "rtcr run: "+format+"\n", args...)
	}
	code, err := runner.Run(o)
	if cp != nil {
		if cerr := cp.Close(); cerr != nil {
			fmt.Fprintf(os.Stderr, "rtcr run: %v\n", cerr)
		}
	}
	if err != nil {
		return err
	}
	return exitStatus(code)
}

// checkpointLine describes a periodic checkpoint for its log line: where
// it went, full or incremental, the pages copied and the freeze, then
// what else happened (a full image where an increment was due, merges).
func checkpointLine(st *rtcr.DumpStats) string {
	kind := "full"
	if st.Parent != "" {
		kind = fmt.Sprintf("incremental on %s, %d pages in parents", filepath.Base(st.Parent), st.ParentPages)
	}
	line := fmt.Sprintf("%s (%s, %d pages copied, frozen %v)", st.Dir, kind, st.PageBytes/4096, st.Freeze.Round(10*time.Microsecond))
	if b := st.Budget; b != nil {
		line += "; " + budgetLine(b, st.Freeze)
	}
	for _, n := range st.Notes {
		line += "; " + n
	}
	return line
}

// budgetLine describes how a checkpoint with a freeze budget went: its
// pre-copy rounds, the pages copied in the freeze, and whether the freeze
// met the budget (why not).
func budgetLine(b *rtcr.BudgetStats, freeze time.Duration) string {
	line := fmt.Sprintf("pre-copy %d rounds, %d pages while running, %d in the freeze; ", b.Rounds, b.PreCopiedPages, b.FrozenPages)
	switch {
	case b.Over != "":
		line += fmt.Sprintf("over the budget of %v: %s", b.Max, b.Over)
	case freeze > b.Max:
		line += fmt.Sprintf("over the budget of %v: the image was complete within it, writing its manifest and releasing the tree took the rest", b.Max)
	default:
		line += fmt.Sprintf("within the budget of %v", b.Max)
	}
	return line
}
