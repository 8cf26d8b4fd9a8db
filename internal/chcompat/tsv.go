package chcompat

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// DiffTSV compares two TabSeparated answers and describes the first
// difference ("" when they are equal). Unless ordered, rows are compared
// as a multiset. Numbers with a fraction or an exponent are equal when
// they differ by no more than a relative 1e-9: summing in another order
// changes the last bits, and the two engines print floats differently.
func DiffTSV(want, got string, ordered bool) string {
	w, g := tsvRows(want), tsvRows(got)
	if !ordered {
		slices.Sort(w)
		slices.Sort(g)
	}
	for i := range min(len(w), len(g)) {
		if !sameRow(w[i], g[i]) {
			return fmt.Sprintf("row %d of %d differs:\n  reference: %s\n  current:   %s", i+1, len(w), clip(w[i], 500), clip(g[i], 500))
		}
	}
	switch {
	case len(w) > len(g):
		return fmt.Sprintf("current engine answers %d rows, reference %d; first missing: %s", len(g), len(w), clip(w[len(g)], 500))
	case len(g) > len(w):
		return fmt.Sprintf("current engine answers %d rows, reference %d; first extra: %s", len(g), len(w), clip(g[len(w)], 500))
	}
	return ""
}

func tsvRows(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func sameRow(a, b string) bool {
	if a == b {
		return true
	}
	ac, bc := strings.Split(a, "\t"), strings.Split(b, "\t")
	if len(ac) != len(bc) {
		return false
	}
	for i := range ac {
		if ac[i] != bc[i] && !closeFloats(ac[i], bc[i]) {
			return false
		}
	}
	return true
}

func closeFloats(a, b string) bool {
	if !strings.ContainsAny(a+b, ".eE") {
		return false // integers compare exactly
	}
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	if math.IsNaN(x) || math.IsNaN(y) {
		return math.IsNaN(x) && math.IsNaN(y)
	}
	return math.Abs(x-y) <= 1e-9*math.Max(math.Abs(x), math.Abs(y))
}

// OrderedAnswer reports whether sql's answer has a defined row order: an
// ORDER BY outside every parenthesis, and no UNION there (ClickHouse
// applies a last ORDER BY to the last SELECT of a UNION only).
func OrderedAnswer(sql string) bool {
	top := topLevel(sql)
	return strings.Contains(top, "ORDER BY") && !strings.Contains(top, "UNION")
}

// topLevel returns sql upper-cased with what is inside parentheses and
// quotes dropped and runs of white space made one blank.
func topLevel(sql string) string {
	var b strings.Builder
	depth := 0
	space := false
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '\'' || c == '`' || c == '"':
			i = closingQuote(sql, i) - 1
			continue
		case c == '(':
			depth++
			continue
		case c == ')':
			depth--
			continue
		case depth > 0:
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// closingQuote returns the index after the quote that closes the one at i
// (a backslash escapes the next byte).
func closingQuote(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return len(s)
}
