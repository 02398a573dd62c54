package moddep

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm-amd.ko: kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko kernel/drivers/crypto/ccp/ccp.ko
kernel/virt/lib/irqbypass.ko:
kernel/drivers/crypto/ccp/ccp.ko:

# comment
kernel/drivers/virtio/virtio.ko:
`

func TestParseAndClosure(t *testing.T) {
	d, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	assert.Len(t, d, 5)

	order, err := d.Closure("kvm-amd")
	require.NoError(t, err)
	assert.Equal(t, []string{
		"kernel/virt/lib/irqbypass.ko",
		"kernel/arch/x86/kvm/kvm.ko",
		"kernel/drivers/crypto/ccp/ccp.ko",
		"kernel/arch/x86/kvm/kvm-amd.ko",
	}, order)
	assertLoadOrder(t, d, order)
}

// assertLoadOrder checks that every module comes after its dependencies.
func assertLoadOrder(t *testing.T, d Deps, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, p := range order {
		pos[p] = i
	}
	for _, p := range order {
		for _, dep := range d[p] {
			i, ok := pos[dep]
			require.True(t, ok, "%s missing from order", dep)
			assert.Less(t, i, pos[p], "%s must load before %s", dep, p)
		}
	}
}

func TestClosureByNameVariants(t *testing.T) {
	d, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	for _, n := range []string{"kvm_amd", "kvm-amd", "kvm-amd.ko", "kernel/arch/x86/kvm/kvm-amd.ko"} {
		order, err := d.Closure(n)
		require.NoError(t, err, n)
		assert.Equal(t, "kernel/arch/x86/kvm/kvm-amd.ko", order[len(order)-1], n)
	}
}

func TestClosureDeduplicates(t *testing.T) {
	d, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	order, err := d.Closure("kvm", "kvm_amd", "irqbypass")
	require.NoError(t, err)
	assert.Len(t, order, 4)
	assertLoadOrder(t, d, order)
}

func TestAll(t *testing.T) {
	d, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	order, err := d.All()
	require.NoError(t, err)
	assert.Len(t, order, 5)
	assertLoadOrder(t, d, order)
}

func TestErrors(t *testing.T) {
	d, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	_, err = d.Closure("nope")
	assert.ErrorIs(t, err, ErrUnknownModule)

	_, err = Parse(strings.NewReader("no colon here\n"))
	assert.ErrorIs(t, err, ErrSyntax)
	_, err = Parse(strings.NewReader("a.ko:\na.ko:\n"))
	assert.ErrorIs(t, err, ErrSyntax)

	missing, err := Parse(strings.NewReader("a.ko: b.ko\n"))
	require.NoError(t, err)
	_, err = missing.Closure("a")
	assert.ErrorIs(t, err, ErrUnknownModule)

	cyc, err := Parse(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n"))
	require.NoError(t, err)
	_, err = cyc.Closure("a")
	assert.ErrorIs(t, err, ErrCycle)

	amb, err := Parse(strings.NewReader("x/a.ko:\ny/a.ko:\n"))
	require.NoError(t, err)
	_, err = amb.Closure("a")
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrUnknownModule))
}

func TestWriteRoundTrip(t *testing.T) {
	d, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, d.Write(&buf))
	again, err := Parse(&buf)
	require.NoError(t, err)
	assert.Equal(t, d, again)
}

func TestName(t *testing.T) {
	assert.Equal(t, "virtio_rng", Name("kernel/drivers/char/hw_random/virtio-rng.ko"))
	assert.Equal(t, "kvm_amd", Name("kvm-amd.ko.xz"))
	assert.Equal(t, "ccp", Name("ccp"))
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("a.ko: b.ko\nb.ko: a.ko\n")
	f.Add("a.ko: b.ko c.ko\nb.ko: c.ko\nc.ko:\n")
	f.Add(":\n")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		order, err := d.All()
		if err != nil {
			return
		}
		if len(order) != len(d) {
			t.Fatalf("All returned %d modules, map has %d", len(order), len(d))
		}
		var buf bytes.Buffer
		if err := d.Write(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(&buf); err != nil {
			t.Fatalf("reparse of written map: %v", err)
		}
	})
}
