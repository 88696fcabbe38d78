package image

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// PageRuns are the page runs of a VMA (VMA.Pages).
type PageRuns []PageRun

// UnmarshalJSON decodes a VMA's page runs: the encoder's form of each
// (parsePageRun) read directly, one pass over the array; anything else
// through encoding/json, each run by PageRun.UnmarshalJSON.
func (rs *PageRuns) UnmarshalJSON(b []byte) error {
	if runs, ok := parsePageRuns(b); ok {
		*rs = runs
		return nil
	}
	// Each element refuses unknown fields itself (PageRun.UnmarshalJSON);
	// json.Unmarshal does not copy b as a Decoder would.
	return json.Unmarshal(b, (*[]PageRun)(rs))
}

// minRunJSON is the length of the shortest page run in the encoder's form
// with its comma: {"Addr":0,"Count":0,"FileOff":0},
const minRunJSON = len(`{"Addr":0,"Count":0,"FileOff":0},`)

// parsePageRuns reads b when it is an array of page runs each in the
// encoder's form, without spaces.
func parsePageRuns(b []byte) (PageRuns, bool) {
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	b = b[1 : len(b)-1]
	// Sized up front, but never beyond what b could hold: a run takes
	// minRunJSON bytes at least, so a hostile manifest of braces in a
	// string cannot make this allocate more than a fraction of its size.
	runs := make(PageRuns, 0, min(bytes.Count(b, []byte{'}'}), (len(b)+1)/minRunJSON))
	for len(b) > 0 {
		end := bytes.IndexByte(b, '}')
		if end < 0 {
			return nil, false
		}
		var r PageRun
		if !parsePageRun(b[:end+1], &r) {
			return nil, false
		}
		runs = append(runs, r)
		b = b[end+1:]
		if len(b) > 0 {
			if b[0] != ',' || len(b) == 1 {
				return nil, false
			}
			b = b[1:]
		}
	}
	return runs, true
}

// UnmarshalJSON decodes one page run. An image of a pre-copy migration
// lists tens of thousands of runs (every page the rounds left in the
// parent between those written since), and the reflection of
// encoding/json took most of a 20 ms manifest read on the destination,
// in the downtime. The form the encoder writes (the fields in order, no
// spaces, integers) is read here directly; anything else goes through
// encoding/json as before (unknown fields refused), so that both accept
// and refuse exactly the same documents with the same values.
func (r *PageRun) UnmarshalJSON(b []byte) error {
	if parsePageRun(b, r) {
		return nil
	}
	type plain PageRun // no methods: encoding/json's own decoding
	if len(b) > 0 && b[0] != '{' {
		// Not an object (null, a string…): no field to refuse, and
		// json.Unmarshal does not copy b as a Decoder would.
		return json.Unmarshal(b, (*plain)(r))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*plain)(r))
}

// parsePageRun reads b when it is exactly the encoder's form of a page
// run: {"Addr":U,"Count":U,"FileOff":I[,"Depth":I][,"Pid":I]}, each
// number a JSON integer without sign (U) or with an optional minus (I)
// that fits its field. It sets r only when it returns true.
func parsePageRun(b []byte, r *PageRun) bool {
	var run PageRun
	var ok bool
	if b, ok = cut(b, `{"Addr":`); !ok {
		return false
	}
	if run.Addr, b, ok = parseUint(b); !ok {
		return false
	}
	if b, ok = cut(b, `,"Count":`); !ok {
		return false
	}
	if run.Count, b, ok = parseUint(b); !ok {
		return false
	}
	if b, ok = cut(b, `,"FileOff":`); !ok {
		return false
	}
	if run.FileOff, b, ok = parseInt(b); !ok {
		return false
	}
	if rest, found := cut(b, `,"Depth":`); found {
		var d int64
		if d, b, ok = parseInt(rest); !ok {
			return false
		}
		run.Depth = int(d)
	}
	if rest, found := cut(b, `,"Pid":`); found {
		var p int64
		if p, b, ok = parseInt(rest); !ok {
			return false
		}
		run.Pid = int(p)
	}
	if string(b) != "}" {
		return false
	}
	*r = run
	return true
}

// cut returns b after prefix, and whether b began with it.
func cut(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// integer returns the length of the JSON integer (no fraction or
// exponent; an optional minus when signed) at the start of b, followed by
// ',' or '}'; 0 if there is none.
func integer(b []byte, signed bool) int {
	i := 0
	if signed && i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == start || b[start] == '0' && i-start > 1 {
		return 0 // no digit, or a leading zero: not JSON
	}
	if i == len(b) || b[i] != ',' && b[i] != '}' {
		return 0 // a fraction, an exponent, a space: encoding/json's
	}
	return i
}

// parseUint reads an unsigned integer at the start of b.
func parseUint(b []byte) (uint64, []byte, bool) {
	n := integer(b, false)
	if n == 0 {
		return 0, b, false
	}
	v, err := strconv.ParseUint(string(b[:n]), 10, 64)
	return v, b[n:], err == nil
}

// parseInt reads a signed integer at the start of b that fits an int
// (the fields it is used for are int or int64).
func parseInt(b []byte) (int64, []byte, bool) {
	n := integer(b, true)
	if n == 0 {
		return 0, b, false
	}
	v, err := strconv.ParseInt(string(b[:n]), 10, strconv.IntSize)
	return v, b[n:], err == nil
}
