package logtail

import (
	"slices"
	"testing"
)

func TestLinesKeepsTheEnd(t *testing.T) {
	tests := []struct {
		name        string
		text        string
		n           int
		want        []string
		wantDropped int
	}{
		{name: "empty text has no lines", text: "", n: 5},
		{name: "only newlines are no lines", text: "\n\n", n: 5},
		{name: "fewer lines than asked are all kept", text: "a\nb\n", n: 5, want: []string{"a", "b"}},
		{name: "exactly n lines are all kept", text: "a\nb\nc", n: 3, want: []string{"a", "b", "c"}},
		{name: "more lines keep the last n and count the rest", text: "a\nb\nc\nd\n", n: 2, want: []string{"c", "d"}, wantDropped: 2},
		{name: "trailing newlines do not count as lines", text: "a\nb\nc\n\n\n", n: 2, want: []string{"b", "c"}, wantDropped: 1},
		{name: "blank lines inside are lines", text: "a\n\nb", n: 2, want: []string{"", "b"}, wantDropped: 1},
		{name: "leading space is kept", text: "  a\r\n  b", n: 2, want: []string{"  a\r", "  b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := Lines(tc.text, tc.n)
			if !slices.Equal(got, tc.want) || dropped != tc.wantDropped {
				t.Fatalf("Lines(%q, %d) = %q, %d; want %q, %d", tc.text, tc.n, got, dropped, tc.want, tc.wantDropped)
			}
		})
	}
}
