package images

// DebianSeedMarker starts the console line DebianUserData prints.
const DebianSeedMarker = "VMM-E2E-DEBIAN"

// DebianUserData is the user-data of the cloud-init seeds the Debian image
// (DebianDisk) boots with in the e2e scenarios and the benchmark:
// cloud-init's runcmd prints DebianSeedMarker with the datasource
// cloud-init recorded in its status (set once its init stage found the
// seed; runcmd runs in the final stage) and the root filesystem's device,
// and power_state powers off. Nothing else: every module more is boot time.
const DebianUserData = "#cloud-config\nruncmd:\n" +
	"  - echo \"" + DebianSeedMarker + " $(grep -o 'DataSourceNoCloud [^]]*]' /run/cloud-init/status.json | head -n 1) root=$(findmnt -no SOURCE /)\" > /dev/ttyS0\n" +
	"power_state:\n  mode: poweroff\n  delay: now\n"
