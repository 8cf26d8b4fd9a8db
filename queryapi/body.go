package queryapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxWriteBody bounds the body of a write.
const maxWriteBody = 1 << 20

// writeArgs returns the arguments of a write: the query arguments, then
// the body's (form-urlencoded as the reference, or a JSON object). An
// argument given more than once (in the query, the body, both, or a JSON
// object naming a key twice) keeps every value, in that order: the write
// refuses it (see mutate). JSON values become their text: strings as they
// are, numbers as written, booleans True/False, null "", arrays their
// items joined by ",".
func writeArgs(r *http.Request) (url.Values, error) {
	args := r.URL.Query()
	if r.Body == nil {
		return args, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxWriteBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(b) > maxWriteBody {
		return nil, fmt.Errorf("body larger than %d bytes", maxWriteBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return args, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var body url.Values
	switch {
	case ct == "application/json" || ct == "" && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")):
		body, err = jsonArgs(b)
	case ct == "application/x-www-form-urlencoded" || ct == "":
		body, err = url.ParseQuery(string(b))
	default:
		return nil, fmt.Errorf("content type %q: send application/x-www-form-urlencoded or application/json", ct)
	}
	if err != nil {
		return nil, err
	}
	for k, v := range body {
		args[k] = append(args[k], v...)
	}
	return args, nil
}

// jsonArgs reads a JSON object's members as arguments, keeping a key given
// twice twice (a map would keep only one of its values, silently).
func jsonArgs(b []byte) (url.Values, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	notObject := func(err error) error { return fmt.Errorf("body is not a JSON object: %w", err) }
	if t, err := dec.Token(); err != nil {
		return nil, notObject(err)
	} else if t != json.Delim('{') {
		return nil, notObject(fmt.Errorf("starts with %v", t))
	}
	out := url.Values{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, notObject(err)
		}
		k, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, notObject(err)
		}
		s, err := jsonText(v, true)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
		out[k] = append(out[k], s)
	}
	if _, err := dec.Token(); err != nil {
		return nil, notObject(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, notObject(errors.New("data after the object"))
	}
	return out, nil
}

func jsonText(v any, top bool) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		if x {
			return "True", nil
		}
		return "False", nil
	case []any:
		if !top {
			return "", fmt.Errorf("nested lists are not supported")
		}
		items := make([]string, len(x))
		for i, it := range x {
			s, err := jsonText(it, false)
			if err != nil {
				return "", err
			}
			items[i] = s
		}
		return strings.Join(items, ","), nil
	}
	return "", fmt.Errorf("objects are not supported as values")
}
