package suite

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Shard is the K-th of N shares of a suite (1 <= K <= N). A case's shard
// depends on its name alone, so it never moves when other cases come or go
// or the suite is reordered, and every engine that starts N copies with
// K = 1..N runs every case exactly once.
type Shard struct{ K, N int }

// ErrShard marks a bad --shard.
var ErrShard = errors.New("bad shard")

// ParseShard reads "K/N".
func ParseShard(s string) (Shard, error) {
	k, n, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("%w %q: want K/N (e.g. 2/4)", ErrShard, s)
	}
	ki, err1 := strconv.Atoi(k)
	ni, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("%w %q: want K/N (e.g. 2/4)", ErrShard, s)
	}
	if ni < 1 || ki < 1 || ki > ni {
		return Shard{}, fmt.Errorf("%w %q: need 1 <= K <= N", ErrShard, s)
	}
	return Shard{ki, ni}, nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.K, s.N) }

// Of is the shard (1..n) that the case named name belongs to.
func Of(name string, n int) int {
	if n <= 1 {
		return 1
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return int(h.Sum64()%uint64(n)) + 1
}

// Has reports whether the case named name is in s.
func (s Shard) Has(name string) bool { return Of(name, s.N) == s.K }

// Select returns the cases of s, in suite order.
func (s Shard) Select(cases []Case) []Case {
	var out []Case
	for _, c := range cases {
		if s.Has(c.Name) {
			out = append(out, c)
		}
	}
	return out
}
