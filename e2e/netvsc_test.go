package e2e

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestNetVSCScenario(t *testing.T) {
	s, err := netvscScenario()
	require.NoError(t, err)
	require.Equal(t, netvscScenarioName, s.Name)
	require.Contains(t, s.Args, "--vmbus")
	require.Contains(t, s.Args, "tap="+netvscTap+",if=vmbus,mac="+netvscMAC)
	require.Equal(t, scenario.Pass, s.WantChecks["net"])
	require.Contains(t, strings.Join(s.Args, " "), "vmm.net_flap=1000")
	require.NotEqual(t, tapName, s.Tap.Name, "its own tap, apart from disk-net's")
}

func TestCheckNetVSCReport(t *testing.T) {
	good := `{"exit_code": 0, "hyperv": {"vmbus": {"netvsc": [{"mac": "52:54:00:12:34:57", "nvsp": "6.1",
	  "ndis": "6.30", "rndis": "1.0", "oids_queried": ["0x00010106", "0x01010101", "0xfc01020d"],
	  "tx_packets": 6000, "tx_bytes": 8400000, "rx_packets": 6000, "rx_bytes": 8400000, "bad": 0,
	  "tx_csum_offloaded": 200, "tx_lso": 150, "rx_csum_verified": 5800,
	  "link": true, "link_changes": 2}]}}}`
	var console []string
	for _, l := range strings.Split(good, "\n") {
		console = append(console, scenario.ReportPrefix+l)
	}
	summary, err := checkNetVSCReport(console)
	require.NoError(t, err)
	require.Contains(t, summary, "nvsp 6.1")
	for _, bad := range []string{
		strings.Replace(good, `"6.1"`, `"5"`, 1),
		strings.Replace(good, `"0x01010101", `, ``, 1),
		strings.Replace(good, `"rx_bytes": 8400000`, `"rx_bytes": 4200000`, 1),
		strings.Replace(good, `"link": true`, `"link": false`, 1),
		strings.Replace(good, `"tx_lso": 150`, `"tx_lso": 0`, 1),
		strings.Replace(good, `"rx_csum_verified": 5800`, `"rx_csum_verified": 10`, 1),
		strings.Replace(good, `"link_changes": 2`, `"link_changes": 0`, 1),
		strings.Replace(good, `"52:54:00:12:34:57"`, `"52:54:00:12:34:58"`, 1),
		strings.Replace(good, `"netvsc": [`, `"other": [`, 1),
		strings.Replace(good, `"bad": 0`, `"bad": 3`, 1),
	} {
		var c []string
		for _, l := range strings.Split(bad, "\n") {
			c = append(c, scenario.ReportPrefix+l)
		}
		_, err := checkNetVSCReport(c)
		require.Error(t, err, bad)
	}
}
