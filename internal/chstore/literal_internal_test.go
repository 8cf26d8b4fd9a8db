package chstore

import (
	"strings"
	"testing"
)

func TestBindSQL(t *testing.T) {
	tests := []struct {
		query string
		args  []any
		want  string
		err   string
	}{
		{query: "SELECT ?, '?', `a?`, \"b?\" -- ?\n, ?", args: []any{1, "x"}, want: "SELECT 1, '?', `a?`, \"b?\" -- ?\n, 'x'"},
		{query: "SELECT 'it\\'s ?' /* ? */, ?", args: []any{2.0}, want: "SELECT 'it\\'s ?' /* ? */, cast(2, 'Float64')"},
		{query: "SELECT ?", err: "placeholder 1 has no argument"},
		{query: "SELECT ?", args: []any{1, 2}, err: "2 arguments for 1 placeholders"},
		{query: "SELECT ?", args: []any{struct{}{}}, err: "no literal for a value of type struct {}"},
		{query: "SELECT ?", args: []any{map[string]int{}}, err: "no literal"},
	}
	for _, tt := range tests {
		got, err := bindSQL(tt.query, tt.args, "UTC")
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want %q", tt.query, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%q:\n got %q (%v)\nwant %q", tt.query, got, err, tt.want)
		}
	}
}

func TestInsertValuesSQL(t *testing.T) {
	types := []string{"UInt64", "Enum8('line' = 1, 'machine' = 2)", "Nullable(Float64)"}
	got, err := insertValuesSQL("INSERT INTO t (a, b, c)", [][]any{{uint64(1), int8(2), nil}, {uint64(2), "line", 0.5}}, types, "UTC")
	want := "INSERT INTO t (a, b, c) VALUES (1, 'machine', NULL), (2, 'line', cast(0.5, 'Float64'))"
	if err != nil || got != want {
		t.Errorf("\n got %q (%v)\nwant %q", got, err, want)
	}
	if _, err := insertValuesSQL("INSERT INTO t (b)", [][]any{{int8(3)}}, types[1:2], "UTC"); err == nil {
		t.Error("an enum code outside the type was written")
	}
	if _, err := insertValuesSQL("INSERT INTO t (a)", nil, nil, "UTC"); err == nil {
		t.Error("an insert without rows was written")
	}
}
