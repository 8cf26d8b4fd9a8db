package record

import (
	"fmt"
	"strings"

	"github.com/takt/takt/internal/l2l"
)

// OpenAPIMarker starts the part of schemas/openapi/records.yaml that
// OpenAPI writes: from this line to the end of the file.
const OpenAPIMarker = "    # Generated from the area definitions (internal/record): do not edit below this line;"

// OpenAPI returns the schemas of r's areas for the components.schemas of
// the record API's OpenAPI description, starting with OpenAPIMarker:
// AreaName (the areas), Record (one of the area schemas), one schema per
// area with every field a read shows, what a write may do with it and what
// it references, WriteFields (what a write may set, per area) and
// SignedCall (what signed writes sign).
func OpenAPI(r *Registry) string {
	var b strings.Builder
	line := func(indent int, format string, v ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, v...)
		b.WriteByte('\n')
	}
	b.WriteString(OpenAPIMarker + "\n")
	line(2, "# go test ./internal/record -run TestOpenAPI -update writes it.")

	areas := r.Areas()
	var names, readOnly []string
	for _, a := range areas {
		names = append(names, a.Name)
		if a.Writes == ReadOnly || a.Writes == WriteActions {
			readOnly = append(readOnly, a.Name)
		}
	}
	line(2, "AreaName:")
	line(3, "type: string")
	line(3, "enum: [%s]", strings.Join(names, ", "))
	line(3, "description: %s", quote("The record area. Read-only (writes answer 405): "+strings.Join(readOnly, ", ")+
		". productionperiods takes only an update of its reason."))

	line(2, "Record:")
	line(3, "description: One record; its fields are those of its area (fields= may select some).")
	line(3, "oneOf:")
	for _, a := range areas {
		line(4, "- {$ref: '#/components/schemas/%s'}", a.Record)
	}

	for _, a := range areas {
		line(2, "%s:", a.Record)
		line(3, "type: object")
		line(3, "description: %s", quote(areaDoc(a)))
		line(3, "properties:")
		for i := range a.Fields {
			f := &a.Fields[i]
			if !f.Has(Read) && !f.Has(Once) {
				continue
			}
			props, doc := fieldSchema(a, f)
			if doc == "" {
				line(4, "%s: {%s}", f.Name, strings.Join(props, ", "))
				continue
			}
			line(4, "%s:", f.Name)
			for _, p := range props {
				line(5, "%s", p)
			}
			line(5, "description: %s", quote(doc))
		}
		if a.Custom {
			line(3, "additionalProperties: {type: string, nullable: true, description: 'custom__<name>: a custom property.'}")
		}
	}

	line(2, "WriteFields:")
	line(3, "type: object")
	line(3, "description: |")
	for _, s := range []string{
		"Writable fields per area (values as text; booleans True/False,",
		"true/false or 1/0; lists comma-separated). `*` required on create;",
		"`fixed` cannot change after create.",
	} {
		line(4, "%s", s)
	}
	for _, a := range areas {
		if a.Writes == ReadOnly || a.Writes == WriteActions {
			continue
		}
		var fs []string
		for _, f := range a.Fields {
			if !f.Has(Write) {
				continue
			}
			s := f.Name
			if f.Has(Required) {
				s += "*"
			}
			if f.Has(Fixed) {
				s += " fixed"
			}
			fs = append(fs, s)
		}
		if a.Custom {
			fs = append(fs, "custom__<name>=value (empty value removes the property)")
		}
		how := a.Scope
		if len(a.SignedFields()) > 0 {
			how += ", signed"
		}
		if a.Writes == WriteAssign {
			how += ", update only"
		}
		grant := ""
		if a.OnCreate == GrantSite {
			grant = " A new site joins the sites of the API user (and of realuser)."
		}
		line(4, "- %s (%s): %s.%s", a.Name, how, strings.Join(fs, ", "), grant)
	}
	line(3, "properties:")
	line(4, "id: {type: integer, description: Update or delete this record.}")
	for _, p := range []string{"auth", "realuser", "_server", "_expiration", "_signature"} {
		line(4, "%s: {type: string}", p)
	}
	line(4, "_action: {type: string, enum: [delete]}")
	line(3, "additionalProperties: {type: string}")

	writeActions(line, areas)

	line(2, "SignedCall:")
	line(3, "type: object")
	line(3, "description: |")
	var signed []string
	for _, a := range areas {
		if len(a.SignedFields()) > 0 {
			signed = append(signed, a.Name)
		}
	}
	for _, s := range []string{
		"Every write (create, update, delete) of " + strings.Join(signed, " and ") + " must be signed. The caller",
		"joins these values with \"\\n\" (U+000A), in this order, computes HMAC-SHA512 of the",
		"UTF-8 bytes with the secret key of the server named by _server, and sends",
		"the base64 of the digest as _signature:",
		"_server, _expiration, the operation (POST for a create, PUT for an update,",
		"DELETE for a delete, however the call is sent: a POST with an id signs PUT,",
		"_action=delete signs DELETE), the area, the record's id in decimal (not for",
		"a create), then the values of the call's signed fields as sent (an argument",
		"not sent signs as the empty string; a JSON value as the text it becomes).",
		"Exactly:",
	} {
		line(4, "%s", s)
	}
	for _, a := range areas {
		fs := a.SignedFields()
		if len(fs) == 0 {
			continue
		}
		f := strings.Join(fs, ", ")
		line(4, "- create %s: _server, _expiration, POST, %s, %s", a.Name, a.Name, f)
		line(4, "- update %s: _server, _expiration, PUT, %s, <id>, %s", a.Name, a.Name, f)
		line(4, "- delete %s: _server, _expiration, DELETE, %s, <id>", a.Name, a.Name)
	}
	for _, s := range []string{
		"Other arguments (auth, realuser, format, site) are not signed. A signed call",
		"gives every argument once (one given twice, in the query and the body or",
		"twice in either, is refused). _expiration is UTC (YYYY-MM-DD HH:MM:SS), in",
		"the future and at most 1 hour ahead; the secret key must belong to the API",
		"key's user; _signature is canonical base64. A signature is accepted once:",
		"it is remembered until its expiration (plus a minute), and while that",
		"record cannot be reached signed calls answer 503. Signatures are compared",
		"in constant time. Any rejection is 403 with the reason in error. The README",
		"has a worked example with its signature.",
	} {
		line(4, "%s", s)
	}
	return b.String()
}

// argTypes are the schema keywords and notes of action argument types.
var argTypes = map[ArgType]string{
	ArgID:    "type: integer, minimum: 1",
	ArgCount: "type: integer, minimum: 0",
	ArgText:  "type: string",
	ArgBool:  "type: boolean",
	ArgTime:  "type: string, example: '2024-03-04 06:30'",
}

// writeActions writes the Actions schema (every action, in prose) and one
// schema of arguments per action: <Record><Action>Args.
func writeActions(line func(int, string, ...any), areas []*Area) {
	line(2, "Actions:")
	line(3, "type: object")
	line(3, "description: |")
	for _, s := range []string{
		"Calls under an area's path besides its records: /api/1.0/<area>/<action>/,",
		"or /api/1.0/<area>/<action>/<argument>/. Arguments come in the query or in",
		"the body (form-urlencoded or JSON; the body wins); an action ignores",
		"arguments it does not take. site=<id> is accepted by every call and must be",
		"one of the key's sites. Times are the site's local time (YYYY-MM-DD HH:MM",
		"or YYYY-MM-DD HH:MM:SS), now, or ISO 8601 with Z or an offset. Invalid",
		"arguments answer HTTP 200 with success false. The answer's data is a record",
		"of the area named (a list of one with [list]), or as the action says.",
	} {
		line(4, "%s", s)
	}
	for _, a := range areas {
		for _, ac := range a.Actions {
			path := a.Name + "/" + ac.Name + "/"
			if ac.PathArg != "" {
				path += "<" + ac.PathArg + ">/"
			}
			ret := ac.Returns
			switch {
			case ret == "":
				ret = "own data"
			case ac.List:
				ret = "[list] " + ret
			}
			line(4, "- %s %s (scope %s; data: %s): %s", strings.Join(ac.Methods, ", "), path, ac.Scope, ret, ac.Doc)
		}
	}
	for _, a := range areas {
		for _, ac := range a.Actions {
			line(2, "%s%sArgs:", a.Record, camel(ac.Name))
			line(3, "type: object")
			line(3, "description: %s", quote("Arguments of "+strings.Join(ac.Methods, ", ")+" /api/1.0/"+a.Name+"/"+ac.Name+"/."))
			var req []string
			for _, g := range ac.Args {
				if g.Required {
					req = append(req, g.Name)
				}
			}
			if len(req) > 0 {
				line(3, "required: [%s]", strings.Join(req, ", "))
			}
			line(3, "properties:")
			if ac.PathArg != "" {
				line(4, "%s: {type: string, description: 'In the path, after the action.'}", ac.PathArg)
			}
			for _, g := range ac.Args {
				if g.Doc == "" {
					line(4, "%s: {%s}", g.Name, argTypes[g.Type])
					continue
				}
				line(4, "%s: {%s, description: %s}", g.Name, argTypes[g.Type], quote(g.Doc))
			}
		}
	}
}

// camel turns a snake_case name into CamelCase.
func camel(s string) string {
	var b strings.Builder
	for p := range strings.SplitSeq(s, "_") {
		b.WriteString(capital(p))
	}
	return b.String()
}

// areaDoc describes area a: its own words and how it is written.
func areaDoc(a *Area) string {
	s := a.Doc
	switch a.Writes {
	case ReadOnly:
		s += " Read-only."
	case WriteActions:
		s += " Its records are written by actions only (see Actions); POST, PUT and DELETE answer 405."
	default:
		s += " Writes need the " + a.Scope + " scope"
		if len(a.SignedFields()) > 0 {
			s += " and are signed (see SignedCall)"
		}
		s += "."
	}
	return strings.TrimSpace(s)
}

// fieldSchema returns the schema keywords of field f of a (but its
// description) and its description.
func fieldSchema(a *Area, f *Field) ([]string, string) {
	var props []string
	lf := f.L2L()
	switch lf.Type {
	case l2l.Int:
		props = append(props, "type: integer")
	case l2l.Float:
		props = append(props, "type: number")
	case l2l.Bool:
		props = append(props, "type: boolean")
	case l2l.DateTime:
		props = append(props, "allOf: [{$ref: '#/components/schemas/UTC'}]")
	case l2l.LocalDateTime:
		props = append(props, "allOf: [{$ref: '#/components/schemas/Local'}]")
	case l2l.Date:
		props = append(props, "type: string", "format: date")
	default:
		props = append(props, "type: string")
	}
	if lf.Nullable {
		props = append(props, "nullable: true")
	}
	if !f.Has(Write) {
		props = append(props, "readOnly: true")
	}
	if len(f.Options) > 0 && f.Kind != Strings && f.Kind != Words {
		props = append(props, "enum: ["+strings.Join(f.Options, ", ")+"]")
	}
	if f.Has(Write) && (f.Kind == Float || f.Kind == Uint) {
		props = append(props, "minimum: 0")
	}
	if f.Max > 0 {
		props = append(props, fmt.Sprintf("maximum: %g", f.Max))
	}
	if f.Default != nil {
		d := fmt.Sprint(f.Default)
		if _, isText := f.Default.(string); isText {
			d = quote(d)
		}
		props = append(props, "default: "+d)
	}

	var doc []string
	if f.Doc != "" {
		doc = append(doc, f.Doc)
	}
	switch f.Kind {
	case Uints:
		doc = append(doc, "Comma-separated ids, e.g. 1,2.")
	case Strings, Words:
		doc = append(doc, "Comma-separated, each one of: "+strings.Join(f.Options, ", ")+".")
	}
	if f.Ref != "" {
		switch {
		case a.Site.Via == f.Name:
			doc = append(doc, "References "+f.Ref+": the id of a record within the caller's sites, whose sites this record has.")
		case a.Writes == WriteRows:
			doc = append(doc, "References "+f.Ref+": the id of a record of the same site (0: none).")
		default:
			doc = append(doc, "References "+f.Ref+".")
		}
	}
	if f.Has(Write) && a.Writes == WriteRows {
		var w []string
		if f.Has(Required) {
			w = append(w, "required on create")
		}
		if f.Has(Fixed) {
			w = append(w, "fixed after it")
		}
		if f.Has(NotEmpty) {
			w = append(w, "not empty")
		}
		if f.Has(Signed) {
			w = append(w, "signed")
		}
		if len(w) > 0 {
			doc = append(doc, capital(strings.Join(w, "; "))+".")
		}
	}
	for _, u := range a.Unique {
		if u.Field != f.Name {
			continue
		}
		switch {
		case len(u.Areas) > 0:
			doc = append(doc, "Unique across "+strings.Join(u.Areas, " and ")+" (when set).")
		case u.PerSite && f.Kind == Bool:
			doc = append(doc, "True for at most one record of a site.")
		case u.PerSite:
			doc = append(doc, "Unique in the site.")
		default:
			doc = append(doc, "Unique.")
		}
	}
	return props, strings.Join(doc, " ")
}

func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// quote writes s as a single-quoted YAML scalar.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
