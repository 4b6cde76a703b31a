package postgres

import "time"

// parseTimeText reads the ISO text forms PostgreSQL prints for date
// ("2024-01-02"), timestamp ("2024-01-02 03:04:05.123456") and timestamptz
// (the same with "+02", "-03:30" or "+05:21:10"), into what pgtype and
// normalize would make of them: a time.Time in UTC. Through pgtype it took
// a scan plan and four allocations a value. ok is false for every other
// form (infinity, BC, years past 9999, another DateStyle): pgtype decodes
// those.
func parseTimeText(s []byte, withTime, withZone bool) (t time.Time, ok bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, len(b) > 0
	}
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return t, false
	}
	y, ok1 := num(s[0:4])
	mo, ok2 := num(s[5:7])
	d, ok3 := num(s[8:10])
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > time.Date(y, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return t, false
	}
	s = s[10:]
	if !withTime {
		return time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC), len(s) == 0
	}
	if len(s) < 9 || s[0] != ' ' || s[3] != ':' || s[6] != ':' {
		return t, false
	}
	h, ok1 := num(s[1:3])
	mi, ok2 := num(s[4:6])
	sec, ok3 := num(s[7:9])
	if !ok1 || !ok2 || !ok3 || h > 23 || mi > 59 || sec > 59 {
		return t, false
	}
	s = s[9:]
	ns := 0
	if len(s) > 0 && s[0] == '.' {
		i := 1
		for ; i < len(s) && i <= 9 && s[i] >= '0' && s[i] <= '9'; i++ {
		}
		f, ok := num(s[1:i])
		if !ok {
			return t, false
		}
		for range 10 - i {
			f *= 10
		}
		ns, s = f, s[i:]
	}
	off := 0
	if withZone {
		if len(s) < 3 || s[0] != '+' && s[0] != '-' {
			return t, false
		}
		sign := 1
		if s[0] == '-' {
			sign = -1
		}
		oh, ok := num(s[1:3])
		if !ok {
			return t, false
		}
		off, s = oh*3600, s[3:]
		for _, unit := range []int{60, 1} {
			if len(s) == 0 {
				break
			}
			if len(s) < 3 || s[0] != ':' {
				return t, false
			}
			v, ok := num(s[1:3])
			if !ok {
				return t, false
			}
			off, s = off+v*unit, s[3:]
		}
		off *= sign
	}
	if len(s) != 0 {
		return t, false
	}
	return time.Date(y, time.Month(mo), d, h, mi, sec-off, ns, time.UTC), true
}
