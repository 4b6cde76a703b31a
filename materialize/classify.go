package materialize

// Classify is the lexical classifier the front end uses until the
// materializer's parser takes over: it looks at the first keyword and
// detects multi-statement strings. It never allocates and reads the
// string at most once.
func Classify(sql string) Statement {
	i := skipSpace(sql, 0)
	j := i
	for j < len(sql) && isLetter(sql[j]) {
		j++
	}
	st := Statement{SQL: sql, Class: classOf(sql[i:j]), Keyword: sql[i:j]}
	st.Multi = hasSecondStatement(sql, j)
	if st.Multi && st.Class == ClassCacheable {
		st.Class = ClassOther
	}
	return st
}

func classOf(kw string) Class {
	if len(kw) < 2 || len(kw) > 10 {
		return ClassOther
	}
	var buf [10]byte
	for i := 0; i < len(kw); i++ {
		buf[i] = kw[i] &^ 0x20 // upper case; kw holds letters only
	}
	switch string(buf[:len(kw)]) {
	case "SELECT", "VALUES", "TABLE":
		return ClassCacheable
	case "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "TRUNCATE", "CREATE", "ALTER", "DROP",
		"GRANT", "REVOKE", "COMMENT", "REINDEX", "VACUUM", "CLUSTER", "REFRESH", "LOCK", "CALL",
		"DO", "IMPORT", "SECURITY", "ANALYZE", "ANALYSE":
		return ClassWrite
	case "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE":
		return ClassTxControl
	case "SET", "RESET", "DISCARD", "PREPARE", "DEALLOCATE", "EXECUTE", "LISTEN", "UNLISTEN",
		"DECLARE", "CLOSE", "FETCH", "MOVE", "LOAD":
		return ClassSessionState
	}
	return ClassOther
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// skipSpace skips white space and comments from i.
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch {
		case isSpace(s[i]):
			i++
		case s[i] == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			i = skipBlockComment(s, i)
		default:
			return i
		}
	}
	return i
}

// skipBlockComment skips a (nested, as in PostgreSQL) block comment at i.
func skipBlockComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && i+1 < len(s) && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

// hasSecondStatement reports whether a statement follows a ';' outside
// quotes, comments and dollar quotes.
func hasSecondStatement(s string, i int) bool {
	for i < len(s) {
		switch c := s[i]; c {
		case '\'', '"':
			i = skipQuoted(s, i+1, c)
		case '$':
			i = skipDollar(s, i)
		case '-', '/':
			if j := skipSpace(s, i); j != i {
				i = j
			} else {
				i++
			}
		case ';':
			if j := skipSpace(s, i+1); j < len(s) && s[j] != ';' {
				return true
			}
			i++
		default:
			i++
		}
	}
	return false
}

// skipQuoted skips to just past the closing quote q; a doubled quote is an
// escaped one. A backslash escapes in E” strings; treating every
// backslash before a quote as an escape can only make us see fewer
// statements, and a missed ';' only costs a cache candidate.
func skipQuoted(s string, i int, q byte) int {
	for i < len(s) {
		switch s[i] {
		case '\\':
			i += 2
		case q:
			if i+1 < len(s) && s[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return i
}

// skipDollar skips a dollar-quoted string $tag$...$tag$ starting at i, or
// just the '$' when it is a parameter ($1) or not a quote.
func skipDollar(s string, i int) int {
	j := i + 1
	for j < len(s) && (isLetter(s[j]) || s[j] == '_' || (j > i+1 && s[j] >= '0' && s[j] <= '9')) {
		j++
	}
	if j >= len(s) || s[j] != '$' {
		return i + 1
	}
	tag := s[i : j+1]
	for k := j + 1; k+len(tag) <= len(s); k++ {
		if s[k] == '$' && s[k:k+len(tag)] == tag {
			return k + len(tag)
		}
	}
	return len(s)
}
