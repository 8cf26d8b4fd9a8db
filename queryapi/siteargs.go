package queryapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/takt/takt/internal/record"
)

// Leading2Lean's clients send site=<id> on every call, read or write. On a
// read it is a filter like any other (every area has a site field). On a
// write to an area whose records have a writable site field it is that
// field. Everywhere else it only names the site the call is made in, and
// must be one of the caller's: on a create of a user it is the site the
// user is given when sites is not; otherwise it changes nothing.

// siteArgument applies the site argument of a write of area a to args (a
// copy is returned when it changes) and returns the problems it has. sites
// are the caller's sites; create says whether the write creates a record.
func siteArgument(a *record.Area, args url.Values, sites []uint64, create bool) (url.Values, []string) {
	vals, given := args["site"]
	if !given {
		return args, nil
	}
	if f, ok := a.Field("site"); ok && f.Has(record.Write) {
		return args, nil // the record's own field
	}
	raw := ""
	if len(vals) > 0 {
		raw = strings.TrimSpace(vals[len(vals)-1])
	}
	out := url.Values{}
	for k, v := range args {
		if k != "site" {
			out[k] = v
		}
	}
	if raw == "" {
		return out, nil
	}
	site, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return out, []string{fmt.Sprintf("site: %q is not a whole number", raw)}
	}
	if !slices.Contains(sites, site) {
		return out, []string{fmt.Sprintf("site: %d is not one of your sites", site)}
	}
	// A record that has sites of its own (a user) gets the site named when
	// a create does not give them.
	if f, ok := a.Field(a.Site.Field); ok && create && f.Kind == record.Uints && f.Has(record.Write) {
		if _, has := out[f.Name]; !has {
			out[f.Name] = []string{raw}
		}
	}
	return out, nil
}
