// Package procfs parses the /proc files rtcr needs to checkpoint a process.
//
// Every parser comes in two halves: a pure function over bytes or an
// io.Reader (ParseMaps, ParseStat, ...), tested on samples recorded from real
// processes in testdata/, and a thin function that reads the file of a live
// process (ReadMaps, ReadStat, ...).
//
// Errors from opening or reading a file are the *fs.PathError of package os,
// which already names the file (and thus the pid), so errors.Is(err,
// fs.ErrNotExist) reports a vanished process. Parse errors are wrapped with
// %w and name the pid, the file and, for line-oriented files, the line:
// "parse /proc/42/maps line 3: ...". The pure parsers name the file without a
// pid ("parse maps line 3: ..."). No parser panics on malformed input.
package procfs
