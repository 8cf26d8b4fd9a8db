package l2l

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestParseBounds: a request may not ask for unbounded work: more than
// MaxFilters filters, or a time outside what ClickHouse's DateTime holds
// (1970 to 2105), are validation failures naming the problem.
func TestParseBounds(t *testing.T) {
	custom := testSchema.WithCustomProperties()
	// customs returns n filters on custom properties.
	customs := func(n int) url.Values {
		v := url.Values{}
		for i := range n {
			v.Set(fmt.Sprintf("custom__p%d", i), "x")
		}
		return v
	}
	for _, tt := range []struct {
		name string
		args url.Values
		s    *Schema
		want string // "" when the query is fine
	}{
		{"20 custom filters", customs(MaxFilters), custom, ""},
		{"21 custom filters", customs(MaxFilters + 1), custom, "at most 20 filters"},
		{"60 custom filters", customs(60), custom, "60 filters"},
		{"10 field filters and 11 custom ones", func() url.Values {
			v := customs(11)
			for _, f := range []string{"name", "name_n"} {
				for _, op := range []string{"", "__lt", "__lte", "__gt", "__gte"} {
					v.Set(f+op, "m")
				}
			}
			return v
		}(), custom, "21 filters: at most 20"},
		{"date-times from 1970", url.Values{"at__gte": {"1970-01-01T00:00:00Z"}, "local__lt": {"2105-12-31T23:59:59"}}, testSchema, ""},
		{"a date-time before 1970", url.Values{"at__gte": {"1969-12-31T23:59:59Z"}}, testSchema, "at__gte: 1969-12-31T23:59:59Z is outside"},
		{"a date before 1970", url.Values{"at": {"1960-01-01"}}, testSchema, "from 1970-01-01 to before 2106-01-01"},
		{"an offset back before 1970", url.Values{"at": {"1970-01-01T00:30:00+01:00"}}, testSchema, "outside"},
		{"a date-time from 2106", url.Values{"local__lt": {"2106-01-01T00:00:00"}}, testSchema, "local__lt: 2106-01-01T00:00:00 is outside"},
		{"a date from 2106", url.Values{"day": {"2106-02-07"}}, testSchema, "day: 2106-02-07 is outside"},
		{"year 9999", url.Values{"at__lt": {"9999-12-31"}}, testSchema, "outside"},
	} {
		_, err := Parse(tt.args, tt.s)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	if _, err := ParseValue(DateTime, "1969-07-20T20:17:40Z"); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("ParseValue of 1969: %v, want ErrOutOfRange", err)
	}
}
