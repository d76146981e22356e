// Package logtail keeps the end of a log, a console or a tool's output for an error message:
// that is where a program says why it failed.
package logtail

import "strings"

// Lines is the last n lines of text, without the newlines that end it, and how many lines came
// before them. Empty text has no lines.
func Lines(text string, n int) (last []string, dropped int) {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return nil, 0
	}
	lines := strings.Split(text, "\n")
	if len(lines) <= n {
		return lines, 0
	}
	return lines[len(lines)-n:], len(lines) - n
}
