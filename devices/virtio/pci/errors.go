package pci

import (
	"errors"
	"fmt"
)

var errNoFeaturesOK = errors.New("DRIVER_OK without FEATURES_OK")

type errQueueTooBig struct {
	i         int
	size, max uint16
}

func (e errQueueTooBig) Error() string {
	return fmt.Sprintf("queue %d: size %d larger than the device's %d", e.i, e.size, e.max)
}
