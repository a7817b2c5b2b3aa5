// Package jsonquote appends Go strings as JSON strings, for the query
// APIs' hand-written encoders (their answers are large enough that
// encoding/json's reflection shows in profiles).
package jsonquote

import "unicode/utf8"

// Style picks the escapes that differ between the encoders meshlens
// matches.
type Style struct {
	// HTML escapes <, > and & as \u003c, \u003e and \u0026, as
	// encoding/json's Encoder does by default.
	HTML bool
	// ShortBF writes backspace and form feed as \b and \f (encoding/json
	// since Go 1.22) rather than \u0008 and \u000c.
	ShortBF bool
}

// EncodingJSON is what encoding/json's Encoder writes by default.
var EncodingJSON = Style{HTML: true, ShortBF: true}

const hexDigits = "0123456789abcdef"

// Append appends s quoted: ", \ and control characters escaped, invalid
// UTF-8 replaced by \ufffd, and U+2028 and U+2029, which end a JavaScript
// string literal, escaped; style adds the rest.
func Append(b []byte, s string, style Style) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!style.HTML || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b' && style.ShortBF:
				b = append(b, '\\', 'b')
			case c == '\f' && style.ShortBF:
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
