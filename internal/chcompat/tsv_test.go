package chcompat

import (
	"strings"
	"testing"
)

func TestDiffTSV(t *testing.T) {
	tests := []struct {
		name      string
		want, got string
		ordered   bool
		diff      string // a part of the difference; "" for equal
	}{
		{name: "equal", want: "1\ta\n2\tb\n", got: "1\ta\n2\tb\n"},
		{name: "empty", want: "", got: ""},
		{name: "order ignored", want: "1\ta\n2\tb\n", got: "2\tb\n1\ta\n"},
		{name: "order kept", want: "1\ta\n2\tb\n", got: "2\tb\n1\ta\n", ordered: true, diff: "row 1 of 2"},
		{name: "float last bits", want: "0.30000000000000004\n", got: "0.3\n"},
		{name: "float printed otherwise", want: "1e-7\t5\n", got: "0.0000001\t5\n"},
		{name: "float differs", want: "0.3\n", got: "0.31\n", diff: "differs"},
		{name: "integers exact", want: "18446744073709551615\n", got: "18446744073709551614\n", diff: "differs"},
		{name: "nan", want: "nan\n", got: "nan\n"},
		{name: "missing row", want: "1\n2\n", got: "1\n", diff: "first missing: 2"},
		{name: "extra row", want: "1\n", got: "1\n3\n", diff: "first extra: 3"},
		{name: "null is no zero", want: "\\N\n", got: "0\n", diff: "differs"},
		{name: "column count", want: "1\t2\n", got: "1\n", diff: "differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DiffTSV(tt.want, tt.got, tt.ordered)
			if tt.diff == "" && d != "" || tt.diff != "" && !strings.Contains(d, tt.diff) {
				t.Errorf("DiffTSV = %q, want %q", d, tt.diff)
			}
		})
	}
}

func TestOrderedAnswer(t *testing.T) {
	tests := []struct {
		sql  string
		want bool
	}{
		{"SELECT a FROM t ORDER BY a LIMIT 3", true},
		{"select a from t order  by\na", true},
		{"SELECT a FROM (SELECT a FROM t ORDER BY a) GROUP BY a", false},
		{"SELECT a FROM t WHERE b = 'ORDER BY' GROUP BY a", false},
		{"SELECT 1 UNION ALL SELECT 2 ORDER BY 1", false},
		{"SELECT k FROM (SELECT 1 AS k UNION ALL SELECT 2) ORDER BY k", true},
		{"SELECT `order by` FROM t", false},
	}
	for _, tt := range tests {
		if got := OrderedAnswer(tt.sql); got != tt.want {
			t.Errorf("OrderedAnswer(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
}
