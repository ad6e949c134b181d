package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Suppressions are leak suppressions in LeakSanitizer's file format: one
// `leak:PATTERN` per line, `#` comments, blank lines ignored. A pattern
// matches as LSan's does: a substring of the function name, source file
// or module path of any frame of the leak, `*` matching any run of
// characters, a leading `^` anchoring at the start and a trailing `$` at
// the end.
type Suppressions struct {
	Patterns []string
}

// ParseSuppressions reads a suppressions file; name is used in errors.
func ParseSuppressions(r io.Reader, name string) (*Suppressions, error) {
	s := &Suppressions{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		typ, pat, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: %q is not TYPE:PATTERN", name, n, line)
		}
		if strings.TrimSpace(typ) != "leak" {
			return nil, fmt.Errorf("%s:%d: suppression type %q is not supported (only leak:)", name, n, typ)
		}
		pat = strings.TrimSpace(pat)
		if pat == "" {
			return nil, fmt.Errorf("%s:%d: empty pattern", name, n)
		}
		s.Patterns = append(s.Patterns, pat)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// Match returns the first pattern that matches a function, file or module
// of frames.
func (s *Suppressions) Match(frames []Frame) (string, bool) {
	if s == nil {
		return "", false
	}
	for _, pat := range s.Patterns {
		for _, f := range frames {
			if TemplateMatch(pat, f.Function) || TemplateMatch(pat, f.File) || TemplateMatch(pat, f.Module) {
				return pat, true
			}
		}
	}
	return "", false
}

// TemplateMatch is sanitizer_common's TemplateMatch: templ matches str if
// its pieces between `*`s occur in str in order; `^` at the start anchors
// the first piece, `$` ends the match at the end of str. An empty str
// never matches.
func TemplateMatch(templ, str string) bool {
	if str == "" {
		return false
	}
	start := false
	if strings.HasPrefix(templ, "^") {
		start = true
		templ = templ[1:]
	}
	asterisk := false
	for templ != "" {
		if templ[0] == '*' {
			templ = templ[1:]
			start = false
			asterisk = true
			continue
		}
		if templ[0] == '$' {
			return str == "" || asterisk
		}
		if str == "" {
			return false
		}
		// The piece runs to the next '*' or '$'.
		end := strings.IndexAny(templ, "*$")
		piece := templ
		if end >= 0 {
			piece, templ = templ[:end], templ[end:]
		} else {
			templ = ""
		}
		pos := strings.Index(str, piece)
		if pos < 0 {
			return false
		}
		if start && pos != 0 {
			return false
		}
		str = str[pos+len(piece):]
		start = false
		asterisk = false
	}
	return true
}
