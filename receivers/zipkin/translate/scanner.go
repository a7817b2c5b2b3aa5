package translate

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a minimal validating JSON tokenizer over a byte slice, made
// for the Zipkin v2 decoder: object keys come back as slices of the input
// (no allocation to compare them), strings are unescaped only when they
// contain escapes, and nesting is bounded. A syntax error is sticky in err.
type scanner struct {
	b        []byte
	i        int
	err      error
	depth    int
	maxDepth int
	scratch  []byte
}

var errUnexpectedEnd = errors.New("unexpected end of JSON")

func (s *scanner) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("offset %d: %s", s.i, fmt.Sprintf(format, args...))
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// consume skips whitespace and consumes c if it is next.
func (s *scanner) consume(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) enter() bool {
	s.depth++
	if s.depth > s.maxDepth {
		s.fail("JSON nested deeper than %d levels", s.maxDepth)
		return false
	}
	return true
}

// beginObject consumes '{'. It returns false (without error) for null.
func (s *scanner) beginObject() bool {
	switch s.peek() {
	case '{':
		s.i++
		return s.enter()
	case 'n':
		s.literal("null")
		return false
	}
	s.fail("expected an object")
	return false
}

// nextKey returns the next key of the object being read (the raw bytes,
// unescaped when needed, valid until the next call) and consumes the
// colon; it returns nil at the closing brace.
func (s *scanner) nextKey(first bool) []byte {
	if s.consume('}') {
		s.depth--
		return nil
	}
	if !first && !s.consume(',') {
		s.fail("expected , or } in object")
		return nil
	}
	if s.peek() != '"' {
		s.fail("expected an object key")
		return nil
	}
	k := s.rawString()
	if !s.consume(':') {
		s.fail("expected : after object key")
		return nil
	}
	return k
}

// beginArray consumes '['; false (without error) for null.
func (s *scanner) beginArray() bool {
	switch s.peek() {
	case '[':
		s.i++
		return s.enter()
	case 'n':
		s.literal("null")
		return false
	}
	s.fail("expected an array")
	return false
}

// nextElem reports whether another element follows in the array.
func (s *scanner) nextElem(first bool) bool {
	if s.consume(']') {
		s.depth--
		return false
	}
	if !first && !s.consume(',') {
		s.fail("expected , or ] in array")
		return false
	}
	return s.err == nil
}

func (s *scanner) literal(lit string) {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		s.fail("invalid literal")
		return
	}
	s.i += len(lit)
}

// rawString reads a string at '"' and returns its contents: a slice of the
// input when it has no escapes, else an unescaped copy in scratch. Invalid
// UTF-8 is replaced, as encoding/json does.
func (s *scanner) rawString() []byte {
	s.i++ // opening quote
	start := s.i
	plain := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if plain {
				return raw
			}
			return s.unescape(raw)
		case c == '\\':
			plain = false
			s.i += 2
			continue
		case c < 0x20:
			s.fail("control character in string")
			return nil
		case c >= 0x80:
			plain = false
		}
		s.i++
	}
	s.fail("unterminated string")
	return nil
}

func (s *scanner) unescape(raw []byte) []byte {
	out := s.scratch[:0]
	for i := 0; i < len(raw); {
		c := raw[i]
		if c >= 0x80 {
			r, size := utf8.DecodeRune(raw[i:])
			out = utf8.AppendRune(out, r) // RuneError for invalid bytes
			i += size
			continue
		}
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			s.fail("bad escape")
			return nil
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			out = append(out, raw[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				s.fail("bad \\u escape")
				return nil
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(raw[min(i+2, len(raw)):]); ok && i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			s.fail("bad escape")
			return nil
		}
		i += 2
	}
	s.scratch = out
	return out
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}

// number reads a JSON number and returns its text.
func (s *scanner) number() []byte {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		s.fail("invalid number")
		return nil
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			s.fail("invalid number")
			return nil
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			s.fail("invalid number")
			return nil
		}
	}
	return s.b[start:s.i]
}

// kind of the next value.
type valueKind uint8

const (
	kindInvalid valueKind = iota
	kindString
	kindNumber
	kindBool
	kindNull
	kindObject
	kindArray
)

func (s *scanner) next() valueKind {
	switch c := s.peek(); {
	case c == '"':
		return kindString
	case c == '-' || (c >= '0' && c <= '9'):
		return kindNumber
	case c == 't' || c == 'f':
		return kindBool
	case c == 'n':
		return kindNull
	case c == '{':
		return kindObject
	case c == '[':
		return kindArray
	case c == 0:
		s.fail("%v", errUnexpectedEnd)
	default:
		s.fail("unexpected character %q", c)
	}
	return kindInvalid
}

func (s *scanner) boolean() bool {
	if s.peek() == 't' {
		s.literal("true")
		return true
	}
	s.literal("false")
	return false
}

// skip reads and discards one value, validating it.
func (s *scanner) skip() {
	switch s.next() {
	case kindString:
		s.rawString()
	case kindNumber:
		s.number()
	case kindBool:
		s.boolean()
	case kindNull:
		s.literal("null")
	case kindObject:
		if s.beginObject() {
			for first := true; s.err == nil; first = false {
				if s.nextKey(first) == nil {
					break
				}
				s.skip()
			}
		}
	case kindArray:
		if s.beginArray() {
			for first := true; s.nextElem(first); first = false {
				s.skip()
			}
		}
	}
}

// parseHex64 parses up to 16 hex digits.
func parseHex64(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	return v, err == nil
}
