package report

import (
	"strings"
	"testing"
)

// FuzzSuppressions: a suppressions file is user input. It parses or says
// which line is wrong, and its patterns match frames without panicking.
func FuzzSuppressions(f *testing.F) {
	f.Add("# third-party code\nleak:suppress_me\n\nleak:never_matches\n")
	f.Add("leak:*\nleak:a*b*c\nleak:^main$\n")
	f.Add("race:x\n")
	f.Add("leak:\n")
	frames := []Frame{
		{Function: "make_node", File: "/src/list.c", Line: 12, Module: "/abs/app"},
		{Function: "", File: "", Module: "/usr/lib/libfoo.so"},
		{Function: "std::vector<int>::push_back(int const&)", File: "/usr/include/c++/12/bits/stl_vector.h"},
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseSuppressions(strings.NewReader(text), "fuzz.supp")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.supp") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for i := range frames {
			s.Match(frames[i : i+1])
		}
		s.Match(frames)
	})
}
