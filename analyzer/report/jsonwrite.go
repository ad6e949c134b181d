package report

import (
	"strconv"
	"unicode/utf8"
)

// jsonWriter builds a JSON document in memory. The reports write their
// JSON by hand: encoding/json's reflection was most of the time of a
// leaks.json (a gcc driver's: 98 groups, 3 000 frames, 143 KB), written
// for every process that leaks. The output is what json.Encoder with
// SetEscapeHTML(false) writes for the same fields (TestWriteJSONAsEncodingJSON).
type jsonWriter struct {
	b []byte
}

// field starts the next member of an object: a comma, then the key.
func (j *jsonWriter) field(name string) {
	j.b = append(j.b, ',')
	j.key(name)
}

// comma separates element i of an array (or member i of an object)
// from the one before it.
func (j *jsonWriter) comma(i int) {
	if i > 0 {
		j.b = append(j.b, ',')
	}
}

// key writes a member's name and colon; the names are plain ASCII.
func (j *jsonWriter) key(name string) {
	j.b = append(j.b, '"')
	j.b = append(j.b, name...)
	j.b = append(j.b, '"', ':')
}

func (j *jsonWriter) uint(v uint64) { j.b = strconv.AppendUint(j.b, v, 10) }
func (j *jsonWriter) int(v int64)   { j.b = strconv.AppendInt(j.b, v, 10) }
func (j *jsonWriter) bool(v bool)   { j.b = strconv.AppendBool(j.b, v) }
func (j *jsonWriter) str(s string)  { j.b = appendJSONString(j.b, s) }

// appendJSONString appends s quoted as encoding/json quotes a string
// without HTML escaping: '"' and '\\' escaped, control characters as
// \b \f \n \r \t or \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029
// as \u2028 and \u2029, everything else as it is.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
