package symbolize

import "github.com/ianlancetaylor/demangle"

// demangleName turns a C++ (Itanium) or Rust (legacy or v0) symbol into the
// form addr2line -C and LeakSanitizer print: fully qualified, with
// template arguments and parameter types ("ns::Box<int>::make(int)"; Rust
// legacy hashes dropped). Anything that is not a mangled name, or fails to
// demangle, is returned unchanged. Output is capped at 64 KiB so a hostile
// symbol cannot blow up memory. GCC clone suffixes (" [clone .isra.0]",
// ".cold") are dropped: they are one source function.
func demangleName(name string) string {
	if !isMangled(name) {
		return name
	}
	s, err := demangle.ToString(name, demangle.NoClones, demangle.MaxLength(16))
	if err != nil || s == "" {
		return name
	}
	return s
}

// isMangled reports whether name looks like an Itanium C++ or Rust symbol.
func isMangled(name string) bool {
	return len(name) > 2 && name[0] == '_' && (name[1] == 'Z' || name[1] == 'R')
}
