package testutil

import (
	"fmt"
	"strings"
)

// LiveDataScript is a guest shell script that fills bytes of the guest's memory with live data in
// /dev/shm, prints "filled" on a line of its own, and goes on counting ("count N") so that a
// restored guest can be seen to run on. Half the data is incompressible (one draw of
// /dev/urandom, copied: LZ4 finds no match that far back) and half one line of text repeated
// (which compresses to almost nothing), as the memory of a guest holding data and page cache is.
func LiveDataScript(bytes int64) string {
	const mib = 1 << 20
	chunk := min(64*mib, bytes/2)
	chunks := bytes / 2 / chunk
	var s strings.Builder
	fmt.Fprintf(&s, "mount -o remount,size=%dm /dev/shm; ", bytes*3/2/mib)
	fmt.Fprintf(&s, "head -c %d /dev/urandom > /dev/shm/r0; yes 'a line of text, repeated as logs and page cache repeat' | head -c %d > /dev/shm/t0; ", chunk, chunk)
	for i := int64(1); i < chunks; i++ {
		fmt.Fprintf(&s, "cat /dev/shm/r0 > /dev/shm/r%d; cat /dev/shm/t0 > /dev/shm/t%d; ", i, i)
	}
	return s.String() + `echo filled; i=0; while :; do echo "count $i"; i=$((i+1)); sleep 0.3; done`
}
