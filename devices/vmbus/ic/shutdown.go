package ic

import (
	"encoding/binary"

	"github.com/vmmdev/vmm/devices/vmbus"
)

// Shutdown IC class (hyperv.h HV_SHUTDOWN_GUID) and vmm's instance.
var (
	ShutdownClass    = vmbus.MustGUID("0e0b6031-5213-4934-818b-38d90ced39db")
	shutdownInstance = vmbus.MustGUID("0e0b6031-5213-4934-818b-38d90ced39db")
)

// Shutdown request flags (hv_util.c shutdown_onchannelcallback): bit 0
// forces, Linux always does.
const (
	PowerOff  = 0
	Reboot    = 2
	Hibernate = 4
	Forced    = 1
)

// shutdownBody is {u32 reason_code, u32 timeout_seconds, u32 flags,
// u8 display_message[2048]}; Linux drops a shorter request.
const shutdownBody = 12 + 2048

// Shutdown is the shutdown service: the host asks the guest to power off,
// reboot or hibernate; the guest answers and then does it.
type Shutdown struct {
	*framework
	onAnswer func(accepted bool)

	requested, answered bool
	accepted            bool
	// deferred is a request made while the versions were still being
	// negotiated; it goes out once they are agreed.
	deferred []byte
}

// ShutdownStatus is the shutdown service's state for the report.
type ShutdownStatus struct {
	Status
	// Requested: a request was sent on this open; Answered: the guest
	// answered it; Accepted: with success.
	Requested bool `json:"requested"`
	Answered  bool `json:"answered"`
	Accepted  bool `json:"accepted"`
}

// NewShutdown returns the shutdown device. onAnswer (may be nil) is called
// when the guest answers a request, with the device's lock held: it must
// not call back into the device.
func NewShutdown(onAnswer func(accepted bool)) *Shutdown {
	s := &Shutdown{onAnswer: onAnswer}
	s.framework = newFramework(service{
		name:     "shutdown",
		offer:    vmbus.Offer{Class: ShutdownClass, Instance: shutdownInstance},
		msgType:  TypeShutdown,
		versions: []uint32{Version(3, 2), Version(3, 1), Version(3, 0), Version(1, 0)},
		answer:   s.answer,
		reset:    func() { s.requested, s.answered, s.accepted, s.deferred = false, false, false, nil },
		ready:    s.ready,
	})
	return s
}

// Request asks the guest to shut down (flags: PowerOff, Reboot or
// Hibernate, optionally | Forced) with a message for its log. While the
// channel is open but the versions not yet agreed, the request waits for
// them; ErrNotReady: the channel is not open or negotiation failed.
func (s *Shutdown) Request(flags uint32, message string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	body := make([]byte, shutdownBody)
	binary.LittleEndian.PutUint32(body[8:], flags)
	copy(body[12:12+2047], message)
	if s.state == StateNegotiating && s.ch != nil {
		s.deferred = body
		s.requested, s.answered, s.accepted = true, false, false
		return nil
	}
	if err := s.requestLocked(body); err != nil {
		return err
	}
	s.requested, s.answered, s.accepted = true, false, false
	return nil
}

func (s *Shutdown) ready() {
	if body := s.deferred; body != nil {
		s.deferred = nil
		if err := s.requestLocked(body); err != nil {
			s.requested = false
		}
	}
}

func (s *Shutdown) answer(status uint32, _ []byte) {
	s.answered, s.accepted = true, status == StatusOK
	if s.onAnswer != nil {
		s.onAnswer(s.accepted)
	}
}

// Status reports the service's state.
func (s *Shutdown) Status() ShutdownStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ShutdownStatus{Status: s.statusLocked(), Requested: s.requested, Answered: s.answered, Accepted: s.accepted}
}
