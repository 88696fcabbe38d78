package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Caps on what one manifest may hold. They are checked on the raw JSON
// (scanPayload) before it is decoded, so that no payload, however it is
// shaped, makes the decoder allocate much more than the payload itself:
// an empty JSON object is 2 bytes, a decoded Thread about 400.
//
// The caps are far above what a real tree has (a process of 64 threads
// with 200 mappings and 50 fds makes a manifest of about 300 objects) and
// bound the decoded model to a few hundred MiB in the worst case.
const (
	// MaxProcesses is the most processes one image may hold.
	MaxProcesses = 4096
	// MaxThreads is the most threads all processes together may have.
	MaxThreads = 1 << 15
	// MaxVMAs is the most mappings all processes together may have
	// (vm.max_map_count defaults to 65530 per process).
	MaxVMAs = 1 << 18
	// MaxFDs is the most fds all processes together may have.
	MaxFDs = 1 << 18
	// MaxObjects is the most JSON objects of any kind (page runs, epoll
	// targets, rlimits …) the payload may hold.
	MaxObjects = 1 << 21
	// MaxPageRuns is the most page runs all VMAs together may have (in
	// the runs section of a version 5 manifest; in the JSON of earlier
	// ones MaxObjects bounds them).
	MaxPageRuns = 1 << 21
	// MaxDepth is the deepest nesting of JSON objects and arrays the model
	// has room for (Checkpoint → Processes → VMA → Pages → PageRun is 5).
	MaxDepth = 8
)

// objectCaps are the caps on objects that are elements of an array under a
// given key.
var objectCaps = map[string]int{
	"Processes": MaxProcesses,
	"Threads":   MaxThreads,
	"VMAs":      MaxVMAs,
	"FDs":       MaxFDs,
}

// scanPayload checks the shape of a JSON payload before it is decoded:
// nesting at most MaxDepth, at most MaxObjects objects, and the counts in
// objectCaps. It does not check that the JSON is well formed (the decoder
// does); it runs in one pass over the bytes with memory bounded by
// MaxDepth.
func scanPayload(b []byte) error {
	// For each open container: is it an array, and the key it is the value
	// of (for arrays: the key whose elements are counted).
	type frame struct {
		array bool
		key   string
	}
	var stack [MaxDepth]frame
	depth := 0
	counts := map[string]int{}
	objects := 0
	lastString := "" // the last string literal, a key if ':' follows
	key := ""        // the key of the value being parsed now
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(b) {
				return fmt.Errorf("unterminated string at byte %d", i)
			}
			// Keys of the model are short; longer strings are values.
			lastString = ""
			if j-i-1 <= 64 {
				lastString = unquoteKey(b[i : j+1])
			}
			i = j
		case ':':
			key = lastString
		case '{', '[':
			if depth == MaxDepth {
				return fmt.Errorf("nesting deeper than %d at byte %d", MaxDepth, i)
			}
			if c == '{' {
				objects++
				if objects > MaxObjects {
					return fmt.Errorf("more than %d objects", MaxObjects)
				}
				if depth > 0 && stack[depth-1].array {
					if k := capKey(stack[depth-1].key); k != "" {
						counts[k]++
						if limit := objectCaps[k]; counts[k] > limit {
							return fmt.Errorf("more than %d %s", limit, k)
						}
					}
				}
			}
			stack[depth] = frame{array: c == '[', key: key}
			depth++
			key = ""
		case '}', ']':
			if depth > 0 {
				depth--
			}
			key = ""
		case ',':
			key = ""
		}
	}
	return nil
}

// unquoteKey returns the string a JSON string literal q (quotes included)
// stands for, "" if it is not valid.
func unquoteKey(q []byte) string {
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1 : len(q)-1])
	}
	var s string
	if json.Unmarshal(q, &s) != nil {
		return ""
	}
	return s
}

// capKey returns the objectCaps key that key selects, "" if none. The JSON
// decoder matches keys to fields without regard to case (Unicode folding),
// so the scan does too.
func capKey(key string) string {
	for k := range objectCaps {
		if strings.EqualFold(key, k) {
			return k
		}
	}
	return ""
}
