// Command rtcr checkpoints and restores Linux processes. It only parses
// arguments and prints results; the work is done by package rtcr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitUsage is the exit status for bad arguments.
const exitUsage = 2

// command is one subcommand.
type command struct {
	name, summary string
	run           func(args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"dump", "checkpoint a process into an image directory", runDump},
		{"restore", "restore a process from an image directory", runRestore},
		{"inspect", "show what an image holds", runInspect},
		{"check", "check the kernel features rtcr needs", runCheck},
		{"run", "run a program in its own pid and time namespaces, ready to checkpoint", runRun},
		{"serve", "receive images from dump --page-server and migrate, restore migrated processes", runServe},
		{"migrate", "move a process to another machine running rtcr serve", runMigrate},
		{"bench", "measure dump and restore speed against the memory-copy ceiling", runBench},
	}
}

// usageError is a bad-arguments error: one line, exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// Fds rtcr inherited must not leak into the processes it starts (the
	// restore stub, rtcr run's program, the bench targets); which they
	// are is noted first, for restore --inherit-fd.
	givenFDs = notCloexec()
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(os.Stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:])
			var ue usageError
			var es exitStatus
			switch {
			case err == nil:
				return 0
			case errors.As(err, &es):
				return int(es)
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, &ue):
				fmt.Fprintf(os.Stderr, "rtcr %s: %v (see rtcr %s --help)\n", c.name, err, c.name)
				return exitUsage
			default:
				fmt.Fprintf(os.Stderr, "rtcr %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(os.Stderr, "rtcr: unknown command %q (see rtcr --help)\n", args[0])
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: rtcr <command> [options]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nrtcr <command> --help shows the options of a command.")
}

// synopses holds each command's synopsis for --help.
var synopses = map[string]string{}

// newFlags returns a flag set that reports errors as usage errors instead
// of exiting or printing, and whose --help goes to stdout.
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	synopses[name] = synopsis
	return fs
}

// printHelp prints a command's synopsis and options to stdout.
func printHelp(fs *flag.FlagSet) {
	fmt.Fprintf(os.Stdout, "usage: rtcr %s %s\n\noptions:\n", fs.Name(), synopses[fs.Name()])
	fs.SetOutput(os.Stdout)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses args, turning flag errors into one-line usage errors and
// refusing stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs)
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// signalContext is cancelled by SIGINT, SIGTERM or SIGHUP, so that an
// interrupted dump releases its target instead of dying with it stopped.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
}
