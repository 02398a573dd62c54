package vmm

import (
	"log/slog"

	"github.com/vmmdev/vmm/vmm/linkwatch"
)

// followTapLink makes a guest NIC's link follow its tap's (IFF_UP and
// carrier): `ip link set TAP down` on the host shows the guest no carrier.
// It returns what stops the watch. A tap whose state cannot be watched
// leaves the guest's link up, with a warning.
func followTapLink(tap string, set func(up bool), log *slog.Logger) func() {
	w, err := linkwatch.Watch(tap, func(up bool) {
		log.Info("tap link", "tap", tap, "up", up)
		set(up)
	}, log)
	if err != nil {
		log.Warn("the guest's link will not follow the tap's", "tap", tap, "err", err)
		return func() {}
	}
	return func() {
		if err := w.Close(); err != nil {
			log.Warn("stop watching the tap's link", "tap", tap, "err", err)
		}
	}
}
