package endpoints

// Placeholders written in place of high-cardinality path segments.
const (
	// IDPlaceholder replaces segments that look like identifiers: numbers,
	// UUIDs, hex hashes, long tokens, dates, e-mail addresses.
	IDPlaceholder = "{id}"
	// ParamPlaceholder replaces a position that saw too many distinct values
	// (adaptive rule).
	ParamPlaceholder = "{param}"
	// RestPlaceholder replaces the segments past MaxSegments.
	RestPlaceholder = "{rest}"
	// OverflowEndpoint is the one endpoint a service's calls go to once its
	// cap of distinct endpoints is reached.
	OverflowEndpoint = "{overflow}"
)

// maxLiteralSegment is the longest segment kept as it is.
const maxLiteralSegment = 64

// isIDSegment reports whether a path segment is an identifier rather than
// part of the route. It never allocates.
func isIDSegment(s string) bool {
	n := len(s)
	if n == 0 {
		return false
	}
	if n > maxLiteralSegment {
		return true
	}
	var digits, lower, upper, hexLetters, other int
	allowedToken := true // [A-Za-z0-9_\-=+~.]
	numericish := true   // digits and - _ : ,
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z':
			lower++
			if c <= 'f' {
				hexLetters++
			}
			numericish = false
		case c >= 'A' && c <= 'Z':
			upper++
			if c <= 'F' {
				hexLetters++
			}
			numericish = false
		case c == '-' || c == '_':
			other++
		case c == ':' || c == ',':
			other++
			allowedToken = false
		case c == '=' || c == '+' || c == '~' || c == '.':
			other++
			numericish = false
		case c == '@':
			// e-mail addresses and user@host identifiers
			return n > 2
		default:
			other++
			allowedToken = false
			numericish = false
		}
	}
	if digits == n {
		return true
	}
	if numericish && digits > 0 && s[0] >= '0' && s[0] <= '9' {
		return true // 123-456, 2024-01-15, 12:30
	}
	if isUUID(s) || isDate(s) {
		return true
	}
	letters := lower + upper
	// Hex hashes: all hex, long, or shorter but mixing digits and letters.
	if other == 0 && hexLetters == letters && (n >= 16 || (n >= 8 && digits > 0 && letters > 0)) {
		return true
	}
	// Long base64/base64url-ish tokens mixing character classes.
	if allowedToken && n >= 20 && digits > 0 && letters > 0 {
		return true
	}
	if allowedToken && n >= 24 && lower > 0 && upper > 0 && other == 0 {
		return true
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// isDate matches YYYY-MM-DD, optionally followed by a time ("T10:00:00Z").
func isDate(s string) bool {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	for _, i := range []int{0, 1, 2, 3, 5, 6, 8, 9} {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) == 10 || s[10] == 'T' || s[10] == 't' || s[10] == '_'
}

// stripQuery drops the query string and fragment.
func stripQuery(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			return p[:i]
		}
	}
	return p
}
