package vmbus

// ChannelInfo describes one channel for the report.
type ChannelInfo struct {
	Relid    uint32 `json:"relid"`
	Class    string `json:"class"`
	Instance string `json:"instance"`
	// SubChannel is the sub_channel_index (0: a primary channel).
	SubChannel uint16       `json:"sub_channel,omitempty"`
	Offered    bool         `json:"offered"`
	Open       bool         `json:"open"`
	Rescinded  bool         `json:"rescinded"`
	Opens      uint64       `json:"opens"`
	Stats      ChannelStats `json:"stats"`
}

// Stats is a snapshot of the bus for traces and the report.
type Stats struct {
	Connected bool `json:"connected"`
	// Version is the negotiated protocol version, "5.3" etc. ("" none).
	Version string `json:"version"`
	// InterruptPage: the guest named an interrupt page (before 5.0);
	// SharedSignals counts its signals on connection 2 (intpage.go).
	InterruptPage bool   `json:"interrupt_page"`
	SharedSignals uint64 `json:"shared_signals"`
	// MessagesIn and MessagesOut count control messages by type name.
	MessagesIn  map[string]uint64 `json:"messages_in"`
	MessagesOut map[string]uint64 `json:"messages_out"`
	// Dropped counts malformed, unknown or untimely guest messages; Busy
	// the posts answered HV_STATUS_INSUFFICIENT_BUFFERS; Refused the
	// versions refused.
	Dropped uint64 `json:"dropped"`
	Busy    uint64 `json:"busy"`
	Refused uint64 `json:"refused"`
	// LastIn is the last guest message; LastOut the last host message:
	// what a stuck guest last asked for and was last told.
	LastIn  string `json:"last_in"`
	LastOut string `json:"last_out"`
	// Queued host messages wait for a free slot; Pending guest messages
	// for processing.
	Queued        int           `json:"queued"`
	Pending       int           `json:"pending"`
	GPADLs        int           `json:"gpadls"`
	GPADLPages    int           `json:"gpadl_pages"`
	GPADLFailures uint64        `json:"gpadl_failures"`
	OpenFailures  uint64        `json:"open_failures"`
	Channels      []ChannelInfo `json:"channels"`
	// Waiting are the guest's requests it has no answer to yet (contact,
	// GPADL, open, teardown, unload); NeverOpened the classes of channels
	// offered to the guest that it has never opened.
	Waiting     []Wait   `json:"waiting"`
	NeverOpened []string `json:"never_opened"`
}

// Stats returns a snapshot of the bus.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{
		Connected:     b.connected,
		InterruptPage: b.intPage != nil, SharedSignals: b.stats.sharedSignals,
		Waiting:     b.waitingLocked(),
		NeverOpened: []string{},
		MessagesIn:  map[string]uint64{},
		MessagesOut: map[string]uint64{},
		Dropped:     b.stats.dropped, Busy: b.stats.busy, Refused: b.stats.refused,
		Queued: len(b.out), Pending: len(b.in),
		GPADLs: b.gpadls.Len(), GPADLPages: b.gpadls.Pages(),
		GPADLFailures: b.stats.gpadlFail, OpenFailures: b.stats.openBad,
	}
	if b.connected {
		s.Version = itoa(b.version>>16) + "." + itoa(b.version&0xffff)
	}
	if b.stats.lastIn != 0 {
		s.LastIn = msgName(b.stats.lastIn)
	}
	if b.stats.lastOut != 0 {
		s.LastOut = msgName(b.stats.lastOut)
	}
	for t := range uint32(msgTypes) {
		if n := b.stats.in[t]; n > 0 {
			s.MessagesIn[msgName(t)] = n
		}
		if n := b.stats.out[t]; n > 0 {
			s.MessagesOut[msgName(t)] = n
		}
	}
	for relid := uint32(1); relid <= MaxRelid && len(s.Channels) < len(b.chans); relid++ {
		cs := b.chans[relid]
		if cs == nil {
			continue
		}
		ci := ChannelInfo{Relid: relid, Class: cs.offer.Class.String(), Instance: cs.offer.Instance.String(),
			Offered: cs.offered, Open: cs.ch != nil, Rescinded: cs.rescinded, Opens: cs.opens, SubChannel: cs.subIndex}
		if cs.offered && cs.opens == 0 && !cs.rescinded {
			s.NeverOpened = append(s.NeverOpened, ci.Class)
		}
		ci.Stats = cs.closed
		if cs.ch != nil {
			ci.Stats = ci.Stats.add(cs.ch.Stats())
		}
		s.Channels = append(s.Channels, ci)
	}
	return s
}

func (a ChannelStats) add(b ChannelStats) ChannelStats {
	return ChannelStats{
		PacketsIn: a.PacketsIn + b.PacketsIn, PacketsOut: a.PacketsOut + b.PacketsOut,
		BytesIn: a.BytesIn + b.BytesIn, BytesOut: a.BytesOut + b.BytesOut,
		SignalsIn: a.SignalsIn + b.SignalsIn, SignalsOut: a.SignalsOut + b.SignalsOut,
	}
}
