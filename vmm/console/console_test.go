package console

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOpenSpecs(t *testing.T) {
	var stdout bytes.Buffer
	c, err := Open("stdio", nil, &stdout)
	require.NoError(t, err)
	require.Nil(t, c.In(), "no terminal: stdin is not read")
	_, err = c.Out().Write([]byte("hi"))
	require.NoError(t, err)
	require.Equal(t, "hi", stdout.String())
	require.NoError(t, c.Close())

	path := filepath.Join(t.TempDir(), "console.log")
	c, err = Open("file:"+path, nil, &stdout)
	require.NoError(t, err)
	_, err = c.Out().Write([]byte("boot\n"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "boot\n", string(got))

	c, err = Open("none", nil, &stdout)
	require.NoError(t, err)
	_, err = c.Out().Write([]byte("dropped"))
	require.NoError(t, err)
	require.Equal(t, "hi", stdout.String())

	for _, bad := range []string{"", "tty", "file:", "file:" + filepath.Join(t.TempDir(), "missing", "x")} {
		_, err := Open(bad, nil, &stdout)
		require.Error(t, err, bad)
	}
}

func TestEscapeReader(t *testing.T) {
	r := &escapeReader{r: bytes.NewReader([]byte{'a', escapeByte, escapeByte, 'b', escapeByte, 'q'})}
	buf := make([]byte, 16)
	n, err := r.Read(buf)
	require.NoError(t, err)
	require.Equal(t, []byte{'a', escapeByte, 'b', 'q'}, buf[:n])
}
