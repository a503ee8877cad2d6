package command

// globMatch reports whether s matches the glob pattern as Redis's
// stringmatchlen matches it without regard to case (as CONFIG GET
// matches parameter names): * ? [abc] [^a-z] and \ escapes.
func globMatch(pattern, s []byte) bool {
	skip := false
	return globMatchImpl(pattern, s, &skip)
}

func globMatchImpl(p, s []byte, skipLonger *bool) bool {
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if globMatchImpl(p[1:], s, skipLonger) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			// No match for the rest of the pattern anywhere in the rest
			// of s: a longer match for an earlier * cannot help.
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			rest, ok := globClass(p[1:], s[0])
			if !ok {
				return false
			}
			// rest follows the class; step back one so the advance
			// below lands on it.
			p = p[len(p)-len(rest)-1:]
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if lowerByte(p[0]) != lowerByte(s[0]) {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// globClass matches c against the class that starts at p (just after
// '['), and returns the pattern after the class's closing ']' (nothing,
// for an unclosed class) and whether c matched.
func globClass(p []byte, c byte) ([]byte, bool) {
	not := len(p) > 0 && p[0] == '^'
	if not {
		p = p[1:]
	}
	match := false
	for {
		switch {
		case len(p) >= 2 && p[0] == '\\':
			p = p[1:]
			match = match || p[0] == c
		case len(p) > 0 && p[0] == ']':
			return p[1:], match != not
		case len(p) == 0:
			return p, match != not
		case len(p) >= 3 && p[1] == '-':
			lo, hi := lowerByte(p[0]), lowerByte(p[2])
			if lo > hi {
				lo, hi = hi, lo
			}
			match = match || lo <= lowerByte(c) && lowerByte(c) <= hi
			p = p[2:]
		default:
			match = match || lowerByte(p[0]) == lowerByte(c)
		}
		p = p[1:]
	}
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
