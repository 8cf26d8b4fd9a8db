package record

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/takt/takt/internal/l2l"
)

// Parse turns the text a write gives for stored field f into its Row
// value. Its errors name the field.
func (f *Field) Parse(raw string) (any, error) {
	switch f.Kind {
	case Uint:
		n, err := strconv.ParseUint(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a whole number", f.Name, raw)
		}
		return n, nil
	case Float:
		x, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return nil, fmt.Errorf("%s: %q is not a number >= 0", f.Name, raw)
		}
		if f.Max > 0 && x > f.Max {
			return nil, fmt.Errorf("%s: %q is above the maximum %g", f.Name, raw, f.Max)
		}
		return x, nil
	case String, Enum:
		if len(raw) > MaxText {
			return nil, fmt.Errorf("%s: longer than %d bytes", f.Name, MaxText)
		}
		if f.Options != nil && !slices.Contains(f.Options, raw) {
			return nil, fmt.Errorf("%s: %q is not one of %s", f.Name, raw, strings.Join(f.Options, ", "))
		}
		return raw, nil
	case Bool:
		switch {
		case raw == "1" || strings.EqualFold(raw, "true") || strings.EqualFold(raw, "t"):
			return true, nil
		case raw == "0" || strings.EqualFold(raw, "false") || strings.EqualFold(raw, "f"):
			return false, nil
		}
		return nil, fmt.Errorf("%s: %q is not True or False", f.Name, raw)
	case Uints:
		out := []uint64{}
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			n, err := strconv.ParseUint(item, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a whole number", f.Name, item)
			}
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out, nil
	case Strings, Words:
		out := []string{}
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			if f.Options != nil && !slices.Contains(f.Options, item) {
				return nil, fmt.Errorf("%s: %q is not one of %s", f.Name, item, strings.Join(f.Options, ", "))
			}
			if !slices.Contains(out, item) {
				out = append(out, item)
			}
		}
		if f.Kind == Words {
			return strings.Join(out, ","), nil
		}
		return out, nil
	case Time:
		if strings.TrimSpace(raw) == "" {
			return time.Unix(0, 0).UTC(), nil
		}
		v, err := l2l.ParseValue(l2l.DateTime, strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a UTC ISO 8601 date-time (2016-05-05T22:39:47)", f.Name, raw)
		}
		return v.(time.Time).Truncate(time.Second), nil
	}
	return nil, fmt.Errorf("%s: not writable", f.Name)
}

// Empty reports whether v, a Row value, is empty text or an empty list.
func Empty(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case []uint64:
		return len(x) == 0
	case []string:
		return len(x) == 0
	}
	return false
}

// Zero reports whether v, a Row value, is its kind's zero value.
func Zero(v any) bool {
	switch x := v.(type) {
	case uint64:
		return x == 0
	case float64:
		return x == 0
	case bool:
		return !x
	case time.Time:
		return x.Unix() <= 0
	}
	return v == nil || Empty(v)
}

// Equal reports whether two Row values are the same.
func Equal(a, b any) bool {
	switch x := a.(type) {
	case []uint64:
		y, _ := b.([]uint64)
		return slices.Equal(x, y)
	case []string:
		y, _ := b.([]string)
		return slices.Equal(x, y)
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return a == b
}

// Checks of field values (Field.Check).

var (
	timeOfDay   = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	usernameRun = regexp.MustCompile(`^[A-Za-z0-9_.@+-]{1,64}$`)
)

// ianaZone accepts the name of an IANA time zone.
func ianaZone(v any, _ Row) string {
	name, _ := v.(string)
	if _, err := time.LoadLocation(name); err != nil || name == "" {
		return fmt.Sprintf("%q is not an IANA time zone", name)
	}
	return ""
}

// clockTime accepts a local time of day, HH:MM.
func clockTime(v any, _ Row) string {
	s, _ := v.(string)
	if !timeOfDay.MatchString(s) {
		return fmt.Sprintf("%q is not HH:MM", s)
	}
	return ""
}

// username accepts 1 to 64 letters, digits or _.@+-.
func username(v any, _ Row) string {
	s, _ := v.(string)
	if !usernameRun.MatchString(s) {
		return "1 to 64 letters, digits or _.@+-"
	}
	return ""
}

// plannedDowntime accepts planned only for downtime reasons.
func plannedDowntime(v any, r Row) string {
	if v == true && r["kind"] == "scrap" {
		return "only downtime reasons can be planned"
	}
	return ""
}

// scrapOnly accepts a scrap category only on scrap reasons.
func scrapOnly(v any, r Row) string {
	if n, _ := v.(uint64); n != 0 && r["kind"] != "scrap" {
		return "only scrap reasons have a category"
	}
	return ""
}
