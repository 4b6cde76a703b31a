package analyze

// Words calls yield with each word of s, lower-cased: runs of letters,
// digits, '_', '$' and non-ASCII bytes, wherever they stand (in comments,
// string literals and quoted identifiers too), until yield returns
// false. It is the lexical view the front end and the catalog loader take
// of SQL and function bodies where parsing is not possible or not worth
// it; anything read this way must err toward seeing a word, never
// toward missing one.
func Words(s string, yield func(word string) bool) {
	var buf [64]byte
	for w, i := nextWord(s, 0, buf[:0]); i >= 0; w, i = nextWord(s, i, buf[:0]) {
		if !yield(string(w)) {
			return
		}
	}
}

// AnyWord reports whether one of the words of s (Words) is in words; it
// allocates nothing.
func AnyWord(s string, words map[string]bool) bool {
	var buf [64]byte
	for w, i := nextWord(s, 0, buf[:0]); i >= 0; w, i = nextWord(s, i, buf[:0]) {
		if words[string(w)] {
			return true
		}
	}
	return false
}

// HasWord reports whether w, a lower-case word, is one of the words of s.
func HasWord(s, w string) bool {
	var buf [64]byte
	for word, i := nextWord(s, 0, buf[:0]); i >= 0; word, i = nextWord(s, i, buf[:0]) {
		if string(word) == w {
			return true
		}
	}
	return false
}

// nextWord returns the first word of s at or after from, lower-cased in
// buf (grown if it is too short), and where to look for the next one; -1
// when there is none. With a buffer on the caller's stack, a caller that
// only looks at the word (a map lookup of string(w)) allocates nothing.
func nextWord(s string, from int, buf []byte) (word []byte, next int) {
	i := from
	for i < len(s) && !isWordByte(s[i]) {
		i++
	}
	if i == len(s) {
		return nil, -1
	}
	w := buf[:0]
	for ; i < len(s) && isWordByte(s[i]); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		w = append(w, c)
	}
	return w, i
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80
}
