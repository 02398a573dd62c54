package e2e

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestIPXEScenario(t *testing.T) {
	s, err := ipxeScenario()
	require.NoError(t, err)
	require.NoError(t, s.Validate())
	require.Contains(t, s.Args, "tap="+ipxeTap+",if=vmbus,mac="+ipxeMAC)
	require.NotEqual(t, tapName, s.Tap.Name)
	require.NotEqual(t, netvscTap, s.Tap.Name)
	i := slices.Index(s.Args, "--expect")
	require.True(t, i >= 0 && i+1 < len(s.Args))
	expect := regexp.MustCompile(s.Args[i+1])
	// What the script prints once iPXE has expanded its address matches;
	// the script's own text (were it echoed) does not.
	require.True(t, expect.MatchString(ipxeFetched+ipxeClient))
	require.False(t, expect.MatchString(s.Tap.NetBoot.Script))
}

func TestCheckIPXEReport(t *testing.T) {
	good := `{"exit_code": 0, "hyperv": {"vmbus": {"bus": {"version": "0.13", "interrupt_page": true, "shared_signals": 12}, "netvsc": [{"mac": "52:54:00:12:34:59",
	  "nvsp": "1", "ndis": "6.1", "rndis": "1.0", "tx_packets": 6, "rx_packets": 9}]}}}`
	lines := func(s string) []string {
		var c []string
		for _, l := range strings.Split(s, "\n") {
			c = append(c, scenario.ReportPrefix+l)
		}
		return c
	}
	summary, err := checkIPXEReport(lines(good))
	require.NoError(t, err)
	require.Contains(t, summary, "vmbus 0.13")
	for _, bad := range []string{
		strings.Replace(good, `"0.13"`, `"5.3"`, 1),
		strings.Replace(good, `"shared_signals": 12`, `"shared_signals": 0`, 1),
		strings.Replace(good, `"nvsp": "1"`, `"nvsp": "6.1"`, 1),
		strings.Replace(good, `"rx_packets": 9`, `"rx_packets": 0`, 1),
		strings.Replace(good, `"netvsc": [`, `"other": [`, 1),
	} {
		_, err := checkIPXEReport(lines(bad))
		require.Error(t, err, bad)
	}
}
