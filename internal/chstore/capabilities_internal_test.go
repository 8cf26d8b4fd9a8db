package chstore

import (
	"reflect"
	"strings"
	"testing"
)

func TestSessionSettings(t *testing.T) {
	if got := SessionSettings(nil); len(got) != 0 {
		t.Errorf("a server without the settings gets %v", got)
	}
	got := SessionSettings([]string{"max_threads", "use_top_k_dynamic_filtering"})
	if want := map[string]any{"use_top_k_dynamic_filtering": 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("SessionSettings = %v, want %v", got, want)
	}
	if q := SessionSettingsQuery(); !strings.Contains(q, "'use_top_k_dynamic_filtering'") {
		t.Errorf("SessionSettingsQuery = %q", q)
	}
}
