package feed

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/takt/takt/internal/kafkax"
	"github.com/takt/takt/internal/testenv"
	"github.com/takt/takt/internal/wire"
)

func TestCursorText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Cursor
	}{
		{"1:0", Cursor{0}},
		{"1:15,3,0,7", Cursor{15, 3, 0, 7}},
		{"1:9223372036854775807", Cursor{1<<63 - 1}},
	} {
		got, err := ParseCursor(tc.in)
		if err != nil || !slices.Equal(got, tc.want) || got.String() != tc.in {
			t.Errorf("%q: %v %v (%q)", tc.in, got, err, got.String())
		}
	}
	long := "1:0"
	for range MaxPartitions {
		long += ",0"
	}
	for _, bad := range []string{"", "1:", "2:1", "1:-1", "1:-0", "1:1,,2", "1:+1", "1:01", "1:1 ", "1:x", "0,1",
		"1:9223372036854775808", long} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrCursor) {
			t.Errorf("%q: %v, want ErrCursor", bad, err)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"1:0", "1:15,3,0,7", "1:", "1:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		if len(c) == 0 || len(c) > MaxPartitions || c.String() != s {
			t.Fatalf("%q parsed to %v (%q)", s, c, c.String())
		}
	})
}

func change(ext string, id uint64) []byte {
	c := wire.PeriodChange{Change: wire.ChangeOpened, Site: 1, LocationKind: "line", LocationID: 1, Line: 1,
		ExternalID: ext, Period: id, State: "running", StartMs: 1000, Open: true, Version: 2}
	b, err := wire.EncodePeriodChange(&c)
	if err != nil {
		panic(err)
	}
	return b
}

// TestStream: a stream opened without a cursor starts at the end; each
// event's id resumes right after it, across partitions; a record that is
// not a period change is skipped; cursors past the end or naming more
// partitions than the topic has are refused.
func TestStream(t *testing.T) {
	brokers := testenv.Stack(t).Brokers
	topic := testenv.Topic(t, 2)
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send := func(p int32, ids ...uint64) {
		for _, id := range ids {
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: change("x", id)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 1)
	r := NewReader(kafkax.Config{Brokers: brokers}, topic, testenv.Logger(t))
	s, err := r.Open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Position().String(); got != "1:1,0" {
		t.Fatalf("start %s, want the end 1:1,0", got)
	}
	send(1, 2)
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("not a change")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	send(0, 3)
	var got []Event
	for len(got) < 2 {
		if got, err = s.Next(ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	byID := map[uint64]string{}
	for _, e := range got {
		byID[e.Change.Period] = e.ID
	}
	if byID[2] == "" || byID[3] == "" || len(got) != 2 {
		t.Fatalf("events %+v", got)
	}
	if !strings.HasPrefix(byID[3], "1:3,") || !strings.HasSuffix(byID[2], ",1") {
		t.Fatalf("ids after change 2 %s, after 3 %s", byID[2], byID[3])
	}
	// Resuming after change 2 delivers 3 and nothing else (the record that
	// is no change is skipped), and after 3 (on partition 0) still 2 when
	// 2 came later in the stream.
	for resume, want := range map[string][]uint64{"1:1,1": {3}, "1:3,0": {2}, "1:0,0": {1, 2, 3}} {
		c, err := ParseCursor(resume)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := r.Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		var ev []Event
		for s2.Lag() > 0 {
			if ev, err = s2.Next(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		var ids []uint64
		for _, e := range ev {
			ids = append(ids, e.Change.Period)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, want) {
			t.Errorf("resume at %s: %v, want %v", resume, ids, want)
		}
		s2.Close()
	}
	for _, bad := range []Cursor{{9, 0}, {0, 0, 0}} {
		if _, err := r.Open(ctx, bad); !errors.Is(err, ErrCursor) {
			t.Errorf("open at %v: %v, want ErrCursor", bad, err)
		}
	}
}
